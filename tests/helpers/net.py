"""Network helpers for tests: free ports and waiting for a server to answer."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, timeout: float = 15.0, interval: float = 0.05) -> None:
    """Wait until ``url`` answers with any HTTP response (an error status counts).

    Args:
        url: The URL to poll with GET.
        timeout: Seconds to wait in all.
        interval: Seconds between attempts.

    Raises:
        TimeoutError: Nothing answered within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=max(interval, 1.0)):
                return
        except urllib.error.HTTPError:
            return  # the server is up; it just did not like the request
        except (OSError, ValueError) as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout} s (last error: {last_error})")
