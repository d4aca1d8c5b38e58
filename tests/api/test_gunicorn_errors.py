"""What gunicorn refuses before the app sees it is answered in JSON too, under real gunicorn.

Each request is written on a raw socket: no HTTP client library would send these.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.helpers.net import free_port
from tests.helpers.processes import ServiceProcess, gunicorn_api


@pytest.fixture(scope="module")
def api_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The API under gunicorn with the project's gunicorn.conf.py, state in a local folder."""
    root = tmp_path_factory.mktemp("gunicorn-errors")
    port = free_port()
    api: ServiceProcess = gunicorn_api(
        port, {"FINETUNE_STATE_URI": f"file://{root / 'state'}"}, root, workers=1
    )
    yield port
    api.stop()


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is; the status, headers (lower-case names) and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "code", "named"),
    [
        (b"GET /v1/jobs?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URL"),
        ("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Namé: a\r\n\r\n".encode(), 400, "header"),
        ("GET /héalthz HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400, "request line"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "X-A"),
        (b"BLAH\r\n\r\n", 400, "request line"),
        (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "HTTP Version"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(200))
            + b"\r\n",
            431,
            "headers",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n",
            431,
            "headers",
        ),
        (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "transfer"),
    ],
)
def test_requests_gunicorn_refuses_get_the_json_error_form(
    api_port: int, request_bytes: bytes, code: int, named: str
) -> None:
    status, headers, body = _exchange(api_port, request_bytes)
    assert status == code
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)
    assert error["code"] == code and error["status"]
    assert named.lower() in error["message"].lower()
    assert "<html" not in body.decode("latin-1").lower()


def test_a_sound_request_after_a_refused_one_is_served_as_before(api_port: int) -> None:
    _exchange(api_port, b"BLAH\r\n\r\n")
    status, _, body = _exchange(
        api_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and json.loads(body) == {"status": "ok"}
