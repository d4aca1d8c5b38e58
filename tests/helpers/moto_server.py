"""A real moto S3 server in a subprocess, for tests that talk S3 over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.helpers.net import free_port, wait_for_http

#: Credentials moto accepts (it accepts any); fixed so that every test signs alike.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"


class MotoServer:
    """``moto_server`` on 127.0.0.1, started and stopped by the test that owns it.

    The port stays the same across ``restart()``, so a client configured before a restart
    reaches the new server (whose memory is empty: moto keeps nothing on disk).

    Args:
        port: The port to listen on; a free one is picked where None.
        host: The address to bind.
        startup_timeout: Seconds to wait for the server to answer.
        serialize_requests: Handle one request at a time (see ``serial_moto_server``): stock
            moto lets two racing conditional writes both succeed, which AWS S3 never does.
            False runs the stock ``moto_server``.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        serialize_requests: bool = True,
    ) -> None:
        self.host = host
        self.serialize_requests = serialize_requests
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="moto-server-"))
        self._log_path = self._log_dir / "moto.log"

    @property
    def endpoint(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:5000``."""
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables pointing boto3 (in this process or a child) at the server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> MotoServer:
        """Start the server and wait until it answers.

        Raises:
            RuntimeError: The process exited during start-up (its log is in the message).
            TimeoutError: It did not answer within ``startup_timeout``.
        """
        if self.running:
            return self
        with open(self._log_path, "ab") as log:
            # Output goes to a file: a pipe nobody reads would fill and block the server.
            self._process = subprocess.Popen(
                [*_moto_command(self.serialize_requests), "-H", self.host, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            wait_for_http(f"{self.endpoint}/moto-api/", timeout=self.startup_timeout)
        except TimeoutError:
            exited = not self.running
            self.stop()
            if exited:
                raise RuntimeError(f"moto_server exited during start-up:\n{self.log()}") from None
            raise
        return self

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 5 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a stalled server would not act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> MotoServer:
        """Stop and start again on the same port, with empty memory."""
        self.stop()
        return self.start()

    def stall(self) -> None:
        """Freeze the server (SIGSTOP): connections are still accepted, nothing is answered.

        What a hung storage gateway looks like to a client, as opposed to a refused connection.
        """
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a stalled server go on (SIGCONT); what it had received is answered then."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def reset(self) -> None:
        """Forget every bucket and object without restarting (``POST /moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def log(self) -> str:
        """What the server printed so far."""
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the server and remove its log."""
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _moto_command(serialize_requests: bool) -> list[str]:
    """The command that runs moto's server with this interpreter's environment."""
    if serialize_requests:
        return [sys.executable, str(Path(__file__).with_name("serial_moto_server.py"))]
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "moto.server"]
