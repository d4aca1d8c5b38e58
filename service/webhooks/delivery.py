"""One HTTP POST to a webhook URL, connected to an address that was checked first."""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

from service.webhooks.addresses import IPAddress, resolve_allowed
from service.webhooks.errors import DeliveryFailed

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``address`` while the Host header names the URL's host."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address``, with the certificate checked against the URL's host name."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(
    url: str, body: bytes, headers: dict[str, str], *, allow_private: bool, timeout: float
) -> int:
    """POST ``body`` to ``url``; the 2xx status, or DeliveryFailed / ForbiddenAddress.

    Redirects are not followed: a 3xx is a failed delivery (a redirect to a private address
    would otherwise get around the address check).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    addresses = resolve_allowed(host, port, allow_private)
    last_error: OSError | None = None
    for address in addresses:
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = _PinnedHTTPSConnection(host, port, address, timeout)
        else:
            connection = _PinnedHTTPConnection(host, port, address, timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(64 * 1024)
            status = response.status
        except ssl.SSLError as exc:
            raise DeliveryFailed(f"TLS error with {host}: {exc}", retryable=False) from exc
        except OSError as exc:  # refused, unreachable, timed out: try the next address
            last_error = exc
            continue
        finally:
            connection.close()
        if 200 <= status < 300:
            return status
        raise DeliveryFailed(
            f"{host} answered HTTP {status}",
            retryable=status in RETRYABLE_STATUSES,
            status=status,
        )
    raise DeliveryFailed(f"could not connect to {host}: {last_error}", retryable=True)
