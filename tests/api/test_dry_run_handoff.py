"""POST /v1/jobs/validate when no worker answers: 503 where none takes it, 504 where one stalls.

The app runs on local job state without a worker; in the 504 case the test itself takes the
request the way a worker does (DryRunStore.claim_next) and then never answers.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Config
from service.context import build_services
from service.jobs import dry_runs
from service.jobs.dry_runs import DryRunStore


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Local job state, file:// URIs allowed, a dry run given 2 s."""
    return Config(
        state_uri=f"file://{tmp_path / 'state'}",
        work_dir=tmp_path / "work",
        allow_local_storage=True,
        dry_run_timeout_seconds=2.0,
    )


@pytest.fixture
def client(config: Config) -> FlaskClient:
    """The real app, and no worker."""
    app: Flask = create_app(config)
    return app.test_client()


@pytest.fixture
def store(config: Config) -> DryRunStore:
    """The dry runs of the app's job state, as a worker sees them."""
    jobs = build_services(config).jobs
    return DryRunStore(jobs.store, jobs.prefix)


def _spec(tmp_path: Path) -> dict[str, Any]:
    return {
        "base_model": {"uri": f"file://{tmp_path}/model.keras"},
        "dataset": {"train": f"file://{tmp_path}/train/"},
        "output": {"uri": f"file://{tmp_path}/out/"},
    }


def _left_behind(config: Config) -> list[Path]:
    state = Path(config.state_uri.removeprefix("file://"))
    return [
        path
        for path in state.rglob("*")
        if path.is_file() and path.relative_to(state).parts[0].startswith("dry-run")
    ]


def test_no_worker_to_take_it_is_a_503_with_retry_after(
    client: FlaskClient, config: Config, store: DryRunStore, tmp_path: Path
) -> None:
    response = client.post("/v1/jobs/validate", json=_spec(tmp_path))

    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"] == "5"
    assert "No worker took the dry run" in response.get_json()["message"]
    # Withdrawn for good: a worker that comes now finds nothing to take, nothing is left.
    assert store.claim_next("late-worker") is None
    assert _left_behind(config) == []


def test_a_worker_that_takes_it_but_stalls_is_a_504(
    client: FlaskClient, config: Config, store: DryRunStore, tmp_path: Path
) -> None:
    taken: list[Any] = []

    def stalling_worker() -> None:
        while not taken:
            request = store.claim_next("stalling-worker")
            if request is not None:
                taken.append(request)

    thread = threading.Thread(target=stalling_worker, daemon=True)
    thread.start()

    response = client.post("/v1/jobs/validate", json=_spec(tmp_path))

    thread.join(10)
    assert response.status_code == 504, response.get_json()
    assert "did not finish within 2 s" in response.get_json()["message"]
    assert taken and taken[0].spec["base_model"]["uri"].endswith("model.keras")
    assert _left_behind(config) == []


def test_a_worker_never_takes_what_the_api_withdrew(
    store: DryRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dry_runs, "TAKE_SECONDS", 0.0)
    request = store.submit({"name": "x"}, timeout_seconds=1.0)

    with pytest.raises(dry_runs.DryRunNotTaken):
        store.wait(request)

    assert store.claim_next("worker") is None
