"""The installed ``finetune`` console script against the API under real gunicorn.

The script is the one ``make serve`` installs (``.venv/bin/finetune`` beside this Python), run
as a user runs it: by its path, and by its name after ``. .venv/bin/activate``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.cli.progress import event_clock_time
from service.jobs.aliases import AliasStore, AliasTarget
from service.storage.local import LocalObjectStore
from tests.helpers.net import free_port
from tests.helpers.processes import VENV_BIN, ApiClient, gunicorn_api
from tests.helpers.specs import raw_spec

pytestmark = pytest.mark.slow

FINETUNE = VENV_BIN / "finetune"


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API alone (no worker: submitted jobs stay queued), on local storage."""
    root = tmp_path_factory.mktemp("console")
    port = free_port()
    api = gunicorn_api(port, {"FINETUNE_STATE_URI": f"file://{root / 'state'}"}, root, workers=1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()


def _finetune(*args: str) -> subprocess.CompletedProcess[str]:
    assert FINETUNE.is_file(), f"{FINETUNE} is not installed (make install)"
    return subprocess.run(
        [str(FINETUNE), *args], capture_output=True, text=True, timeout=60, env=_no_url()
    )


def _no_url() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("FINETUNE_URL", "FINETUNE_TOKEN")}


@pytest.mark.parametrize("where", ["before", "after"])
def test_url_before_or_after_the_command(api_url: str, where: str) -> None:
    job = ApiClient(api_url).submit(raw_spec())
    url = ["--url", api_url]
    args = [*url, "status", job["id"]] if where == "before" else ["status", job["id"], *url]
    run = _finetune(*args)
    assert run.returncode == 0, run.stderr
    assert job["id"] in run.stdout
    assert "progress  queued epoch 0/" in run.stdout, run.stdout
    assert "queued queued" not in run.stdout, "a queued job says queued once"


def test_finetune_on_the_path_after_activating_the_virtualenv(api_url: str) -> None:
    job = ApiClient(api_url).submit(raw_spec())
    activate = VENV_BIN / "activate"
    line = f". {shlex.quote(str(activate))} && finetune --json --url {api_url} status {job['id']}"
    run = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=60, env=_no_url()
    )
    assert run.returncode == 0, run.stderr
    assert f'"id": "{job["id"]}"' in run.stdout


def test_wait_on_a_finished_job_shows_when_its_events_happened(api_url: str) -> None:
    job = ApiClient(api_url).submit(raw_spec())
    cancelled = requests.post(f"{api_url}/v1/jobs/{job['id']}/cancel", timeout=10)
    assert cancelled.status_code == 202, cancelled.text
    events = ApiClient(api_url).events(job["id"])
    # Wait into the next second, so that "now" and the events' times differ.
    time.sleep(1.2)
    run = _finetune("wait", job["id"], "--url", api_url)
    assert run.returncode == 4, run.stderr  # cancelled
    lines = [line for line in run.stderr.splitlines() if "  [" in line]
    assert [line.split(" ", 1)[0] for line in lines] == [event_clock_time(e) for e in events]
    assert [line.split("[", 1)[1].split("]")[0] for line in lines] == [e["type"] for e in events]


def test_submit_validate_asks_for_the_dry_run_first(api_url: str, tmp_path: Path) -> None:
    """``submit --validate`` sends ?validate=true: with no worker to run the dry run the API
    answers 503 and nothing is queued (a plain submit of the same spec is queued)."""
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(raw_spec(name="validate-first")))

    def named() -> list[str]:
        jobs = requests.get(f"{api_url}/v1/jobs?limit=100", timeout=10).json()["jobs"]
        return [job["id"] for job in jobs if job["name"] == "validate-first"]

    run = _finetune("--url", api_url, "submit", str(spec), "--validate")

    assert run.returncode != 0 and "No worker took the dry run" in run.stderr, run.stderr
    assert named() == []
    plain = _finetune("--url", api_url, "submit", str(spec))
    assert plain.returncode == 0, plain.stderr
    assert named() == [plain.stdout.strip()]


def test_alias_show_and_rollback(api_url: str, tmp_path: Path) -> None:
    path = tmp_path / "production.json"
    uri = f"file://{path}"
    aliases = AliasStore(LocalObjectStore(Path("/")), str(path).lstrip("/"), uri)
    for name in ("v1", "v2"):
        aliases.promote(
            AliasTarget(
                job_id=f"ftj_{name}",
                keras_uri=f"file:///models/{name}/model.keras",
                saved_model_uri=f"file:///models/{name}/saved_model/",
                manifest_uri=f"file:///models/{name}/manifest.json",
            )
        )
    shown = _finetune("alias", "show", uri, "--url", api_url)
    assert shown.returncode == 0, shown.stderr
    assert "version 2" in shown.stdout and "ftj_v2" in shown.stdout
    assert "history (oldest first)" in shown.stdout and "promoted by ftj_v1" in shown.stdout
    rolled = _finetune("--url", api_url, "alias", "rollback", uri, "--version", "2")
    assert rolled.returncode == 0, rolled.stderr
    assert "now points at ftj_v1 again (version 3; it pointed at ftj_v2)" in rolled.stdout
    assert aliases.read().current.target.job_id == "ftj_v1"
    again = _finetune("--url", api_url, "alias", "rollback", uri)
    assert again.returncode == 2 and "no earlier target" in again.stderr, again.stderr
    as_json = _finetune("--url", api_url, "alias", "show", uri, "--json")
    assert json.loads(as_json.stdout)["change"] == {"action": "rollback", "restored_version": 1}
