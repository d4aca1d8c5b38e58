"""A new attempt never trains while a trainer of an earlier attempt of its job lives.

The earlier trainer that outlived its worker (what the parent-death signal should prevent) is
stood for by a real process holding the job's lock file, as a trainer does; the worker runs
in-process and its trainer is a real child.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from schemas import JobSpecSchema
from service.jobs import JobStatus
from service.worker import Worker
from service.worker.attempt_dirs import LOCK_FILE, remove_attempt
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import local_services

WAIT = 180
#: Holds an exclusive flock on argv[1] until killed, as a trainer holds its job's lock.
HOLDER = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(3600)\n"
)


def _hold(path: Path) -> subprocess.Popen[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


@pytest.mark.slow
def test_a_new_attempt_waits_for_a_live_trainer_of_its_job_then_trains(tmp_path: Path) -> None:
    pretrain_tiny_cnn(tmp_path / "model.keras", epochs=1, per_class=20)
    write_image_folder(tmp_path / "train", ["a", "b"], per_class=20, digits=[0, 1])
    services = local_services(tmp_path, heartbeat_seconds=0.3)
    spec = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{tmp_path / 'model.keras'}"},
            "dataset": {"train": f"file://{tmp_path / 'train'}/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap"},
            "training": {"epochs": 1, "batch_size": 16},
            "output": {"uri": f"file://{tmp_path / 'out'}/"},
        }
    )
    job_id = services.jobs.create(spec).id
    old_trainer = _hold(services.config.work_dir / job_id / LOCK_FILE)
    worker = threading.Thread(target=Worker(services).run_once, daemon=True)
    try:
        worker.start()
        deadline = time.monotonic() + WAIT
        while not any(
            e.type == "info" and "earlier attempt" in e.message
            for e in services.jobs.read_events(job_id)
        ):
            assert time.monotonic() < deadline, services.jobs.read_events(job_id)
            time.sleep(0.1)
        time.sleep(3)  # it would have trained one epoch by now (a second here)
        types = [e.type for e in services.jobs.read_events(job_id)]
        assert "epoch" not in types and services.jobs.get(job_id).status is JobStatus.RUNNING
    finally:
        old_trainer.kill()
        old_trainer.wait()
    worker.join(WAIT)

    final = services.jobs.get(job_id)
    assert final.status is JobStatus.SUCCEEDED, final.error
    assert not os.listdir(services.config.work_dir)  # the job's folder and lock file are gone


def test_a_job_folder_stays_while_a_trainer_holds_its_lock(tmp_path: Path) -> None:
    attempt = tmp_path / "job" / "attempt-2"
    (attempt / "inputs").mkdir(parents=True)
    holder = _hold(tmp_path / "job" / LOCK_FILE)
    try:
        remove_attempt(attempt)
        assert not attempt.exists() and (tmp_path / "job" / LOCK_FILE).exists()
    finally:
        holder.kill()
        holder.wait()
    (tmp_path / "job" / "attempt-1").mkdir()  # left by a worker that was killed
    attempt.mkdir()
    remove_attempt(attempt)
    assert not (tmp_path / "job").exists()
