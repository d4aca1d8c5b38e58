"""Cancel, time limit and out-of-memory retries: the worker in-process, the trainer a real child."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from schemas import JobSpecSchema
from service.context import Services
from service.jobs import JobRecord, JobStatus
from service.worker import Worker
from tests.helpers.children import is_alive, trainer_pids
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import local_services


@pytest.fixture
def services(tmp_path: Path) -> Services:
    """Local job state; heartbeats every 0.3 s so a cancel is seen quickly."""
    return local_services(tmp_path, heartbeat_seconds=0.3, min_batch_size=8)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pretrained model and 400 images (epochs of about a second here)."""
    root = tmp_path_factory.mktemp("resilience")
    pretrain_tiny_cnn(root / "model.keras", epochs=2, per_class=30)
    write_image_folder(root / "train", ["a", "b"], per_class=200, digits=[0, 1])
    return {"model": root / "model.keras", "train": root / "train"}


def _spec(inputs: dict[str, Path], out: Path, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "base_model": {"uri": f"file://{inputs['model']}"},
        "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
        "head": {"cut_at": "gap"},
        "training": {"epochs": 2, "batch_size": 32, "seed": 1},
        "output": {"uri": f"file://{out}/"},
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    spec: dict[str, Any] = JobSpecSchema().load(raw)
    return spec


def _run_in_thread(services: Services) -> threading.Thread:
    thread = threading.Thread(target=Worker(services).run_once, daemon=True)
    thread.start()
    return thread


def _wait_running_epoch(services: Services, job_id: str, epoch: int) -> JobRecord:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = services.jobs.get(job_id)
        if record.progress.get("epoch", 0) >= epoch:
            return record
        time.sleep(0.1)
    raise AssertionError(f"never reached epoch {epoch}: {services.jobs.get(job_id)}")


def test_cancel_running_job_stops_its_trainer_within_seconds(
    services: Services, inputs: dict[str, Path], tmp_path: Path
) -> None:
    record = services.jobs.create(_spec(inputs, tmp_path / "out", training={"epochs": 50}))
    thread = _run_in_thread(services)
    _wait_running_epoch(services, record.id, 1)
    (trainer,) = trainer_pids()
    assert is_alive(trainer)
    asked = time.monotonic()
    services.jobs.cancel(record.id)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not is_alive(trainer), "the trainer process outlived the cancel"
    assert time.monotonic() - asked < 15
    final = services.jobs.get(record.id)
    assert final.status is JobStatus.CANCELLED
    assert final.error == {"code": "cancelled", "message": "Cancelled at the client's request."}
    assert not (tmp_path / "out").exists()  # nothing published
    assert not os.listdir(services.config.work_dir)  # scratch cleaned


def test_job_past_its_time_limit_fails_with_timeout(
    services: Services, inputs: dict[str, Path], tmp_path: Path
) -> None:
    spec = _spec(
        inputs, tmp_path / "out", training={"epochs": 200}, limits={"max_runtime_seconds": 8}
    )
    record = services.jobs.create(spec)
    started = time.monotonic()
    Worker(services).run_once()
    final = services.jobs.get(record.id)
    assert final.status is JobStatus.FAILED
    assert final.error and final.error["code"] == "timeout"
    assert "max_runtime_seconds (8 s)" in final.error["message"]
    assert time.monotonic() - started < 40
    assert trainer_pids() == []


def test_out_of_memory_retries_with_half_the_batch(inputs: dict[str, Path], tmp_path: Path) -> None:
    # Fault injection (Config.fault_oom_above_batch): nothing here can run out of memory on demand.
    services = local_services(
        tmp_path, heartbeat_seconds=0.3, min_batch_size=8, fault_oom_above_batch=8
    )
    record = services.jobs.create(_spec(inputs, tmp_path / "out", training={"epochs": 1}))
    Worker(services).run_once()
    final = services.jobs.get(record.id)
    assert final.status is JobStatus.SUCCEEDED, final.error
    retries = [e.data for e in services.jobs.read_events(record.id) if e.type == "oom_retry"]
    assert retries == [
        {"batch_size": 32, "next_batch_size": 16},
        {"batch_size": 16, "next_batch_size": 8},
    ]
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert '"batch_size": 32' in manifest  # the spec as submitted


def test_out_of_memory_below_the_floor_fails_naming_the_sizes(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    services = local_services(
        tmp_path, heartbeat_seconds=0.3, min_batch_size=8, fault_oom_above_batch=4
    )
    record = services.jobs.create(_spec(inputs, tmp_path / "out", training={"epochs": 1}))
    Worker(services).run_once()
    final = services.jobs.get(record.id)
    assert final.status is JobStatus.FAILED
    assert final.error and final.error["code"] == "out_of_memory"
    assert "(32, 16, 8; the floor is 8)" in final.error["message"]
