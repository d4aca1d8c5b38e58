"""A dead or failed trainer is named for what the evidence says: memory, a full disk, a kill.

The worker runs in-process (``run_once``), its trainer a real child; the faults are real: the
child killed with SIGKILL by this test, a real small tmpfs as the work directory filled up while
the job trains, the kernel's OOM killer in a memory cgroup of the test's own.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import JobSpecSchema
from service.context import Services
from service.jobs import JobStatus
from service.worker import Worker
from service.worker.faults import OomKillCounter
from tests.helpers.cgroups import memory_cgroup
from tests.helpers.children import trainer_pids
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import local_services
from tests.helpers.small_disk import small_tmpfs

pytestmark = pytest.mark.slow

MiB = 1024**2
#: A bound for waiting on a child or an epoch, never asserted as a timing.
WAIT = 180


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pretrained tiny CNN and 200 images of 32x32 (an epoch of about a second here)."""
    root = tmp_path_factory.mktemp("fault-naming")
    pretrain_tiny_cnn(root / "model.keras", epochs=1, per_class=20)
    write_image_folder(root / "train", ["a", "b"], per_class=100, digits=[0, 1])
    return {"model": root / "model.keras", "train": root / "train"}


def _create(services: Services, inputs: dict[str, Path], out: Path, epochs: int) -> str:
    spec = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{inputs['model']}"},
            "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap"},
            "training": {"epochs": epochs, "batch_size": 16, "seed": 1},
            "output": {"uri": f"file://{out}/"},
        }
    )
    return services.jobs.create(spec).id


def _wait(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(what)


def _events(services: Services, job_id: str, type_: str) -> list[dict[str, Any]]:
    return [e.data for e in services.jobs.read_events(job_id) if e.type == type_]


@pytest.fixture
def in_thread() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Runs a test's helper beside the worker; its exception fails the test at the end."""
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    for thread in threads:
        thread.join(WAIT)
    if errors:
        raise errors[0]


def test_a_sigkill_from_outside_is_retried_once_at_the_same_batch_size_then_named_killed(
    inputs: dict[str, Path],
    tmp_path: Path,
    in_thread: Callable[[Callable[[], None]], None],
) -> None:
    services = local_services(tmp_path, heartbeat_seconds=0.3, min_batch_size=8)
    job_id = _create(services, inputs, tmp_path / "out", epochs=30)
    killed: list[int] = []

    def kill_each_trainer() -> None:
        # The first after an epoch (its checkpoint is stored), the retry's as soon as it runs.
        _wait(lambda: services.jobs.get(job_id).progress.get("epoch", 0) >= 1, "no epoch")
        for _ in range(2):
            (pid,) = _wait(lambda: [p for p in trainer_pids() if p not in killed], "no trainer")
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    in_thread(kill_each_trainer)
    Worker(services).run_once()

    final = services.jobs.get(job_id)
    assert final.status is JobStatus.FAILED and final.error is not None
    assert final.error["code"] == "killed", final.error
    assert "SIGKILL" in final.error["message"] and "happened again" in final.error["message"]
    assert len(killed) == 2
    assert _events(services, job_id, "killed_retry") == [{"batch_size": 16, "next_batch_size": 16}]
    assert _events(services, job_id, "oom_retry") == []
    assert [e["epoch"] for e in _events(services, job_id, "resumed")] != []
    assert trainer_pids() == []


def test_a_full_work_disk_is_disk_full_naming_it_and_the_batch_size_is_kept(
    inputs: dict[str, Path],
    tmp_path: Path,
    in_thread: Callable[[Callable[[], None]], None],
) -> None:
    with small_tmpfs(tmp_path / "work", 16 * MiB) as work:
        services = local_services(tmp_path, heartbeat_seconds=0.3, min_batch_size=8)
        job_id = _create(services, inputs, tmp_path / "out", epochs=30)

        def fill_the_disk() -> None:
            # After the first epoch: checkpoints, TensorBoard logs and the export are to come.
            _wait(lambda: services.jobs.get(job_id).progress.get("epoch", 0) >= 1, "no epoch")
            with (work / "filler").open("wb") as filler:
                try:
                    while True:
                        filler.write(b"\0" * MiB)
                        filler.flush()
                except OSError:
                    pass

        in_thread(fill_the_disk)
        Worker(services).run_once()

        final = services.jobs.get(job_id)
        assert final.status is JobStatus.FAILED and final.error is not None
        assert final.error["code"] == "disk_full", final.error
        message = final.error["message"]
        assert str(work) in message and "FINETUNE_WORK_DIR" in message
        assert "free of 16.0 MiB" in message
        assert _events(services, job_id, "oom_retry") == []
        assert _events(services, job_id, "killed_retry") == []
        assert trainer_pids() == []


def test_a_dataset_larger_than_the_work_disk_is_disk_full_naming_its_size(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    # 24 files of 1 MiB (their bytes are never decoded: the download is what fails).
    big = tmp_path / "big"
    for label in ("a", "b"):
        (big / label).mkdir(parents=True)
        for i in range(12):
            (big / label / f"{i}.png").write_bytes(os.urandom(MiB))
    with small_tmpfs(tmp_path / "work", 16 * MiB) as work:
        services = local_services(tmp_path, heartbeat_seconds=0.3)
        job_id = _create(services, {**inputs, "train": big}, tmp_path / "out", epochs=1)

        Worker(services).run_once()

        final = services.jobs.get(job_id)
        assert final.status is JobStatus.FAILED and final.error is not None
        assert final.error["code"] == "disk_full", final.error
        message = final.error["message"]
        assert str(work) in message and "free of 16.0 MiB" in message
        assert "downloading" in message and "the step needs 24.0 MiB" in message, message
        assert trainer_pids() == []


def test_a_trainer_the_oom_killer_kills_halves_the_batch_size_saying_so(
    inputs: dict[str, Path],
    tmp_path: Path,
    in_thread: Callable[[Callable[[], None]], None],
) -> None:
    # Each trainer child is moved into a memory cgroup of 80 MiB as soon as it starts; it is
    # killed by the kernel while importing TensorFlow. The worker reads that cgroup's count.
    services = local_services(tmp_path, heartbeat_seconds=0.3, min_batch_size=8)
    job_id = _create(services, inputs, tmp_path / "out", epochs=1)
    with memory_cgroup() as group:
        group.limit(80 * MiB)
        worker = Worker(services)
        worker.trainers.oom_kills = OomKillCounter([group.oom_file])
        done = threading.Event()

        def move_trainers_in() -> None:
            moved: set[int] = set()
            while not done.is_set():
                for pid in trainer_pids():
                    if pid not in moved:
                        group.add(pid)
                        moved.add(pid)
                time.sleep(0.005)

        in_thread(move_trainers_in)
        try:
            worker.run_once()
        finally:
            done.set()
        kills = group.oom_kills()

    final = services.jobs.get(job_id)
    assert final.status is JobStatus.FAILED and final.error is not None
    assert final.error["code"] == "out_of_memory", final.error
    assert "(16, 8; the floor is 8)" in final.error["message"]
    assert kills >= 2
    assert _events(services, job_id, "oom_retry") == [{"batch_size": 16, "next_batch_size": 8}]
    (retry,) = [e for e in services.jobs.read_events(job_id) if e.type == "oom_retry"]
    assert "retrying with 8" in retry.message and "out-of-memory killer" in retry.message
