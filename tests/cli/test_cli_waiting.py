"""The CLI's client and its wait, against the real API served over HTTP (no worker runs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from service.app import create_app
from service.cli.client import GET_RETRY, ApiClient
from service.cli.errors import CliError
from service.cli.exit_codes import ExitCode
from service.cli.waiting import WaitTimedOut, wait_for
from service.config import Config
from tests.helpers.net import free_port
from tests.helpers.specs import raw_spec


class RecordingView:
    """A ProgressView that keeps what it is told."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.closed = False

    def update(self, job: dict[str, Any]) -> None:
        self.jobs.append(job)

    def event(self, event: dict[str, Any]) -> None:
        """Events are not looked at here."""

    def note(self, message: str) -> None:
        self.notes.append(message)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    """The real app on a local job store, served by werkzeug on a free port."""
    app = create_app(Config(state_uri=f"file://{tmp_path / 'state'}", allow_local_storage=False))
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_a_final_job_ends_the_wait_at_once(api_url: str) -> None:
    client = ApiClient(api_url)
    job = client.submit(raw_spec())
    client.cancel(job["id"])  # a queued job is cancelled at once: final
    view = RecordingView()
    final = wait_for(client, job["id"], view, timeout=30, interval=0.05)
    assert final["status"] == "cancelled"
    assert [seen["status"] for seen in view.jobs] == ["cancelled"] and view.closed


def test_a_job_still_queued_at_the_timeout_ends_the_wait_with_the_job_as_last_read(
    api_url: str,
) -> None:
    client = ApiClient(api_url)
    job = client.submit(raw_spec())
    view = RecordingView()
    with pytest.raises(WaitTimedOut) as caught:
        wait_for(client, job["id"], view, timeout=0.3, interval=0.05)
    assert caught.value.job["id"] == job["id"] and caught.value.job["status"] == "queued"
    assert len(view.jobs) >= 2 and view.notes == [] and view.closed


def test_a_client_error_while_waiting_is_not_retried(api_url: str) -> None:
    view = RecordingView()
    with pytest.raises(CliError) as caught:
        wait_for(ApiClient(api_url), "ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ", view, timeout=30)
    assert caught.value.exit_code is ExitCode.CLIENT_ERROR and "404" in caught.value.message
    assert view.jobs == [] and view.notes == []


def test_an_unreachable_service_is_retried_until_the_timeout() -> None:
    client = ApiClient(f"http://127.0.0.1:{free_port()}", get_retry=GET_RETRY.replace(attempts=1))
    view = RecordingView()
    with pytest.raises(WaitTimedOut) as caught:
        wait_for(client, "ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ", view, timeout=0.3, interval=0.05)
    assert caught.value.job["status"] == "unknown"
    assert view.notes and all("Cannot reach" in note for note in view.notes)
    assert all(note.endswith("(retrying)") for note in view.notes)


def test_a_get_gives_up_on_an_unreachable_service_after_its_tries() -> None:
    client = ApiClient(
        f"http://127.0.0.1:{free_port()}", get_retry=GET_RETRY.replace(base_delay=0.0)
    )
    with pytest.raises(CliError) as caught:
        client.job("ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ")
    assert caught.value.exit_code is ExitCode.CLIENT_ERROR
    assert "Cannot reach the service" in caught.value.message
