"""Real service processes for end-to-end tests: gunicorn, workers, the embedded default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.helpers.net import free_port, wait_for_http

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class ServiceProcess:
    """A child process in its own process group, its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd or REPO
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start the process."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole process group."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group, then SIGKILL what is left."""
        if not self.process:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(10)

    def log(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def gunicorn_api(
    port: int,
    env: dict[str, str],
    log_dir: Path,
    workers: int = 2,
    run_as: Sequence[str] = (),
    python: str = sys.executable,
) -> ServiceProcess:
    """The API under real gunicorn, with the project's gunicorn.conf.py.

    Args:
        run_as: A command prefix that runs it as another user (``setpriv --reuid ...``).
        python: The interpreter that runs gunicorn (one that user may run).
    """
    argv = [
        *run_as,
        python,
        str(VENV_BIN / "gunicorn"),
        "-c",
        "deploy/gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "service.app:create_app()",
    ]
    api = ServiceProcess(f"gunicorn-{port}", argv, env, log_dir).start()
    return _answering(api, f"http://127.0.0.1:{port}/healthz", timeout=30)


def embedded_service(
    port: int,
    env: dict[str, str],
    log_dir: Path,
    api_workers: int = 2,
    cwd: Path | None = None,
    run_as: Sequence[str] = (),
    python: str = sys.executable,
) -> ServiceProcess:
    """``python -m service serve`` (the API under gunicorn and one worker), answering.

    Args:
        run_as: A command prefix that runs it as another user (``setpriv --reuid ...``).
        python: The interpreter (one that user may run).
    """
    argv = [*run_as, python, "-m", "service", "serve", "--port", str(port)]
    serve = ServiceProcess(
        f"serve-{port}", [*argv, "--api-workers", str(api_workers)], env, log_dir, cwd=cwd
    ).start()
    return _answering(serve, f"http://127.0.0.1:{port}/healthz", timeout=60)


def _answering(process: ServiceProcess, url: str, timeout: float) -> ServiceProcess:
    """``process`` once ``url`` answers; stopped, its log in the error, where it never does."""
    try:
        wait_for_http(url, timeout=timeout)
    except Exception:
        process.stop()
        raise RuntimeError(f"{process.name} did not start:\n{process.log()}") from None
    return process


def worker_process(name: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    """``python -m service worker``."""
    return ServiceProcess(name, [sys.executable, "-m", "service", "worker"], env, log_dir).start()


#: Workers that look for jobs and renew their lease often, so that tests see changes quickly.
QUICK_WORKER_ENV = {"FINETUNE_POLL_SECONDS": "0.2", "FINETUNE_HEARTBEAT_SECONDS": "1"}


@contextmanager
def api_and_worker(
    env: dict[str, str], log_dir: Path, api_workers: int = 2
) -> Iterator[tuple[str, ServiceProcess, ServiceProcess]]:
    """The API under gunicorn and one job worker, both with ``env`` and ``QUICK_WORKER_ENV``.

    Yields:
        The API's base URL, the API process and the worker process (stopped afterwards).
    """
    env = {**QUICK_WORKER_ENV, **env}
    port = free_port()
    api = gunicorn_api(port, env, log_dir, workers=api_workers)
    worker = worker_process("worker", env, log_dir)
    try:
        yield f"http://127.0.0.1:{port}", api, worker
    finally:
        worker.stop()
        api.stop()


class ApiClient:
    """Just enough of an HTTP client of the API for tests."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """POST a job; asserts it was created."""
        response = self.http.post(f"{self.base_url}/v1/jobs", json=spec, timeout=10)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def validate(self, spec: dict[str, Any], attempts: int = 5) -> requests.Response:
        """POST a dry run; a 503 (no worker took it: one may still be starting) is retried."""
        for _ in range(attempts - 1):
            response = self.http.post(f"{self.base_url}/v1/jobs/validate", json=spec, timeout=180)
            if response.status_code != 503:
                return response
            time.sleep(float(response.headers.get("Retry-After", "5")))
        return self.http.post(f"{self.base_url}/v1/jobs/validate", json=spec, timeout=180)

    def job(self, job_id: str) -> dict[str, Any]:
        """GET a job."""
        response = self.http.get(f"{self.base_url}/v1/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every event of a job."""
        response = self.http.get(f"{self.base_url}/v1/jobs/{job_id}/events", timeout=10)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    def wait(
        self,
        job_id: str,
        timeout: float = 300,
        statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
        logs: tuple[ServiceProcess, ...] = (),
    ) -> dict[str, Any]:
        """Poll until the job reaches one of ``statuses``; the logs are in the failure text."""
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while job["status"] not in statuses:
            if time.monotonic() > deadline:
                dump = "\n".join(f"--- {p.name}\n{p.log()[-6000:]}" for p in logs)
                raise AssertionError(
                    f"job {job_id} still {job['status']} after {timeout}s: {job}\n{dump}"
                )
            time.sleep(0.5)
            job = self.job(job_id)
        return job
