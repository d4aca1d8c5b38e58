"""The README's first command: API and one worker together, local storage, nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.scenario import assert_succeeded_job, held_out_accuracy, job_spec, prepare
from tests.helpers.net import free_port, wait_for_http
from tests.helpers.processes import ApiClient, ServiceProcess

pytestmark = pytest.mark.slow


def test_make_serve_runs_a_job_on_local_storage(tmp_path: Path) -> None:
    make = shutil.which("make")
    assert make, "make is needed: the README's first command is `make serve`"
    scenario = prepare(tmp_path / "inputs")
    port = free_port()
    env = {
        "FINETUNE_STATE_URI": f"file://{tmp_path / 'state'}",
        "FINETUNE_WORK_DIR": str(tmp_path / "work"),
        "FINETUNE_POLL_SECONDS": "0.2",
        "FINETUNE_HEARTBEAT_SECONDS": "1",
    }
    serve = ServiceProcess(
        "make-serve", [make, "-s", "serve", f"PORT={port}"], env, tmp_path
    ).start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        client = ApiClient(f"http://127.0.0.1:{port}")
        out_dir = tmp_path / "out"
        job = client.submit(
            job_spec(
                f"file://{scenario.base_model}",
                f"file://{scenario.train_dir}/",
                f"file://{out_dir}/",
            )
        )
        final = client.wait(job["id"], timeout=400, logs=(serve,))
        events = client.events(job["id"])
    finally:
        serve.stop()

    assert_succeeded_job(final, events)
    assert (out_dir / "model.keras").is_file()
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["job_id"] == job["id"]
    assert (tmp_path / "state" / "jobs" / f"{job['id']}.json").is_file()
    accuracy = held_out_accuracy(out_dir / "saved_model", scenario)
    assert accuracy >= 0.6, f"held-out accuracy {accuracy:.2f} is not clearly above chance (0.25)"
