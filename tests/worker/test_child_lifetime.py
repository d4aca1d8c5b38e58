"""A worker killed with SIGKILL leaves no trainer child behind: not a training one, not a spare,
not a dry run's; and the job's next attempt, on a worker that takes it over when the lease runs
out, trains only after the old trainer is gone.

The worker is a real ``python -m service worker`` process on local job state; only it is killed
(not its process group). The test process is made a child subreaper meanwhile, so the orphaned
trainer becomes its child and its end can be read: SIGKILL, the parent-death signal, rather than
an exit of its own later on (a spare would otherwise exit when it reads the end of its request
pipe, and a training child at its next message).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas import JobSpecSchema
from service.context import Services
from service.jobs import JobStatus
from service.jobs.clock import parse
from service.jobs.dry_runs import DryRunStore
from tests.helpers.children import trainer_pids
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.processes import ServiceProcess, worker_process
from tests.helpers.services import local_services

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

#: Generous bounds for waiting on processes, never asserted as timings: importing TensorFlow
#: takes seconds here, more while other tests load the CPU.
START_TIMEOUT = 240
GONE_TIMEOUT = 30
_PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pretrained tiny CNN and 200 images: a job of many epochs trains for minutes."""
    root = tmp_path_factory.mktemp("lifetime")
    pretrain_tiny_cnn(root / "model.keras", epochs=1, per_class=20)
    write_image_folder(root / "train", ["a", "b"], per_class=100, digits=[0, 1])
    return {"model": root / "model.keras", "train": root / "train"}


@pytest.fixture
def services(tmp_path: Path) -> Services:
    """Local job state that the worker process shares."""
    return local_services(tmp_path)


def _start_worker(
    services: Services, tmp_path: Path, warm: bool, name: str = "worker", **more: str
) -> ServiceProcess:
    env = {
        **more,
        "FINETUNE_STATE_URI": services.config.state_uri,
        "FINETUNE_WORK_DIR": str(services.config.work_dir),
        "FINETUNE_ALLOW_LOCAL_STORAGE": "1",
        "FINETUNE_POLL_SECONDS": "0.2",
        "FINETUNE_HEARTBEAT_SECONDS": "0.5",
        "FINETUNE_WARM_TRAINER": "1" if warm else "0",
    }
    return worker_process(name, env, tmp_path)


@pytest.fixture
def orphans() -> Iterator[list[int]]:
    """This process adopts orphaned descendants for the test; add the pids a test expects.

    Any of them still alive at the end is killed and reaped, so a failed test leaves none.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, ctypes.get_errno()
    adopted: list[int] = []
    try:
        yield adopted
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for pid in adopted:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _loaded_tensorflow(pid: int) -> bool:
    try:
        return "_pywrap_tensorflow_internal" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _wait_for(
    condition: Callable[[], object], what: str, timeout: float, log: ServiceProcess
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (after {timeout} s)\n{log.log()[-4000:]}")
        time.sleep(0.2)


def _kill_and_expect_killed(worker: ServiceProcess, trainer: int) -> float:
    """SIGKILL the worker alone; its trainer child must end by SIGKILL too, within seconds.

    Returns:
        The time (``time.time()``) by which the trainer was seen gone.
    """
    assert worker.process is not None
    worker.process.kill()
    worker.process.wait(30)
    ended: list[int] = []

    def reaped() -> bool:
        pid, status = os.waitpid(trainer, os.WNOHANG)  # adopted: this process is its parent now
        if pid:
            ended.append(status)
        return bool(pid)

    _wait_for(reaped, f"the trainer child {trainer} outlived its worker", GONE_TIMEOUT, worker)
    gone_by = time.time()
    (status,) = ended
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    assert trainer_pids(os.getpid()) == []
    return gone_by


def test_a_training_child_dies_with_its_worker(
    services: Services, inputs: dict[str, Path], tmp_path: Path, orphans: list[int]
) -> None:
    spec = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{inputs['model']}"},
            "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap"},
            "training": {"epochs": 500, "batch_size": 16},
            "output": {"uri": f"file://{tmp_path / 'out'}/"},
        }
    )
    record = services.jobs.create(spec)
    worker = _start_worker(services, tmp_path, warm=False)
    try:
        assert worker.process is not None
        _wait_for(
            lambda: services.jobs.get(record.id).progress.get("epoch", 0) >= 1,
            "the job never finished an epoch",
            START_TIMEOUT,
            worker,
        )
        trainers = trainer_pids(worker.process.pid)
        orphans.extend(trainers)
        assert len(trainers) == 1, trainers  # the job's child (no spare: warm is off)

        _kill_and_expect_killed(worker, trainers[0])
    finally:
        worker.stop()
    assert not (tmp_path / "out").exists()


def test_a_warm_spare_dies_with_its_worker(
    services: Services, tmp_path: Path, orphans: list[int]
) -> None:
    worker = _start_worker(services, tmp_path, warm=True)
    try:
        assert worker.process is not None
        pid = worker.process.pid
        _wait_for(lambda: trainer_pids(pid), "no warm trainer started", START_TIMEOUT, worker)
        spares = trainer_pids(pid)
        orphans.extend(spares)
        assert len(spares) == 1, spares
        # Warm: TensorFlow's native library is loaded, the child waits for a request.
        _wait_for(
            lambda: _loaded_tensorflow(spares[0]),
            "the spare never imported TensorFlow",
            START_TIMEOUT,
            worker,
        )

        _kill_and_expect_killed(worker, spares[0])
    finally:
        worker.stop()


def test_a_dry_runs_child_dies_with_its_worker(
    services: Services, inputs: dict[str, Path], tmp_path: Path, orphans: list[int]
) -> None:
    spec = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{inputs['model']}"},
            "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap"},
            "output": {"uri": f"file://{tmp_path / 'out'}/"},
        }
    )
    worker = _start_worker(services, tmp_path, warm=False)  # no spare: a child is the dry run's
    try:
        assert worker.process is not None
        pid = worker.process.pid
        DryRunStore(services.jobs.store, services.jobs.prefix).submit(spec, 300)
        _wait_for(lambda: trainer_pids(pid), "no dry run's child started", START_TIMEOUT, worker)
        children = trainer_pids(pid)
        orphans.extend(children)
        assert len(children) == 1, children
        # Past its start (a child whose worker is gone before it asks for the parent-death
        # signal exits by itself), still busy: TensorFlow mapped, the inspection to come.
        _wait_for(
            lambda: _loaded_tensorflow(children[0]),
            "the dry run's child never imported TensorFlow",
            START_TIMEOUT,
            worker,
        )

        _kill_and_expect_killed(worker, children[0])
    finally:
        worker.stop()


def test_the_next_attempt_trains_only_after_the_killed_workers_trainer_is_gone(
    services: Services, inputs: dict[str, Path], tmp_path: Path, orphans: list[int]
) -> None:
    spec = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{inputs['model']}"},
            "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap"},
            "training": {"epochs": 3, "batch_size": 16},
            "output": {"uri": f"file://{tmp_path / 'out'}/"},
        }
    )
    record = services.jobs.create(spec)
    quick_lease = {"FINETUNE_LEASE_SECONDS": "3", "FINETUNE_SWEEP_SECONDS": "0.5"}
    first = _start_worker(services, tmp_path, warm=False, name="first", **quick_lease)
    try:
        assert first.process is not None
        _wait_for(
            lambda: services.jobs.get(record.id).progress.get("epoch", 0) >= 1,
            "the job never finished an epoch",
            START_TIMEOUT,
            first,
        )
        (trainer,) = trainer_pids(first.process.pid)
        orphans.append(trainer)
        gone_by = _kill_and_expect_killed(first, trainer)
    finally:
        first.stop()

    second = _start_worker(services, tmp_path, warm=False, name="second", **quick_lease)
    try:
        _wait_for(
            lambda: services.jobs.get(record.id).status is JobStatus.SUCCEEDED,
            "the second worker did not finish the job",
            START_TIMEOUT,
            second,
        )
    finally:
        second.stop()
    events = services.jobs.read_events(record.id)
    (second_claim,) = [e for e in events if e.type == "claimed" and e.data["attempt"] == 2]
    retrained = [e for e in events if e.type == "epoch" and e.seq > second_claim.seq]
    assert retrained, [e.type for e in events]
    assert all(parse(e.time).timestamp() > gone_by for e in retrained)
    assert not os.listdir(services.config.work_dir)  # both attempts' folders and the lock gone
