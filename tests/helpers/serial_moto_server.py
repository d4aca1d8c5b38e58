"""moto's S3 server, handling one request at a time so that conditional writes are atomic.

Run as a script with moto_server's arguments (``-H HOST -p PORT``). Stock moto handles each
request on its own thread and checks ``If-Match`` / ``If-None-Match`` before writing, without
a lock: two conditional writes racing from one ETag can both succeed (seen in about one run in
four of 20 threads x 20 rounds). AWS S3 and MinIO make the check and the write one atomic step;
serializing requests gives the test double that same guarantee, so that race tests test our
code rather than moto's. Requests still arrive on many connections, on moto's threaded server.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import moto.server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication


class SerializedDispatcher(DomainDispatcherApplication):
    """moto's WSGI application, with every request (response body included) under one lock."""

    _request_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self._request_lock:
            body: Iterable[bytes] = super().__call__(environ, start_response)
            return list(body)


if __name__ == "__main__":
    moto.server.DomainDispatcherApplication = SerializedDispatcher  # type: ignore[attr-defined]
    moto.server.main(sys.argv[1:])
