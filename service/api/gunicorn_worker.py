"""gunicorn's threaded worker, answering the requests gunicorn itself refuses in JSON.

gunicorn parses each request before the app sees it and answers what it cannot parse (an
over-long request line: ``414``; too many or too large headers: ``431``; a malformed request
line, method, version or header, a header name outside the HTTP token characters: ``400``) with
a small HTML page of its own. The service promises JSON for every error, so this worker lets
gunicorn decide the status and log as it always does, keeps its HTML page from the client, and
sends the service's JSON error form instead.

Use it with ``worker_class = "service.api.gunicorn_worker.JsonErrorWorker"``.
"""

from __future__ import annotations

import json
import re
import socket
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from service.api.errors import error_body

#: The status line gunicorn writes first: ``HTTP/1.1 414 URI Too Long``.
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")
#: What gunicorn's reason text may echo of the request at most (names, not whole headers).
_ECHO_LIMIT = 200
_WHAT_TO_CHANGE = {
    400: "The request is not valid HTTP ({detail}); send a well-formed request line and "
    "headers, with header names of ASCII letters, digits and '-'.",
    414: "The request line is too long ({detail}); shorten the URL or its query string.",
    431: "The request headers are too many or too large ({detail}); send fewer or smaller headers.",
}


class JsonErrorWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's ``gthread`` worker whose own error answers use the service's JSON form."""

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """Log and decide the status as gunicorn does, then answer in JSON."""
        captured = _CapturingSocket(client)
        super().handle_error(req, captured, addr, exc)
        code = captured.status()
        if code is None:  # gunicorn wrote nothing (the client had gone): neither do we
            return
        try:
            util.write_nonblock(client, json_error_answer(code, _message(code, exc)))
        except Exception:  # the client went away meanwhile; gunicorn ignores this too
            self.log.debug("Failed to send error message.")


def json_error_answer(code: int, message: str) -> bytes:
    """A complete HTTP/1.1 answer, closing the connection, with the JSON error form as body."""
    body = json.dumps(error_body(code, message), ensure_ascii=True).encode("ascii") + b"\n"
    head = (
        f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def _message(code: int, exc: BaseException) -> str:
    if code == 500:  # gunicorn has logged the traceback; the client gets none of it
        return "Internal error; the service log has the details."
    detail = str(exc)
    if len(detail) > _ECHO_LIMIT:
        detail = detail[:_ECHO_LIMIT] + "..."
    template = _WHAT_TO_CHANGE.get(code, "{phrase}: {detail}.")
    return template.format(detail=detail, phrase=HTTPStatus(code).phrase)


class _CapturingSocket:
    """The client socket, except that what is sent through it is kept instead."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self._sent += data

    def send(self, data: bytes) -> int:
        self._sent += data
        return len(data)

    def status(self) -> int | None:
        """The status code of what was sent, or None where nothing was."""
        match = _STATUS_LINE.match(bytes(self._sent))
        return int(match.group(1)) if match else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
