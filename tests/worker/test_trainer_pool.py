"""The warm trainer: a child that imported TensorFlow before its job came, one per job."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from schemas import JobSpecSchema
from service.config import Config
from service.context import build_services
from service.contract.messages import EpochEnded, ProgressMessage
from service.contract.request import TrainingOutcome, TrainingRequest
from service.jobs import JobStatus
from service.worker import Worker
from service.worker.child_runner import TrainerPool
from tests.helpers.children import is_alive, trainer_pids
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.trainer.support import make_request

#: Generous: importing TensorFlow takes seconds here, more while other tests load the CPU.
READY_TIMEOUT = 180


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pretrained tiny CNN and a small image folder, made once for the module."""
    root = tmp_path_factory.mktemp("pool")
    pretrain_tiny_cnn(root / "model.keras", epochs=2, per_class=30)
    write_image_folder(root / "train", ["a", "b"], per_class=16, digits=[0, 1])
    return {"model": root / "model.keras", "train": root / "train"}


def _request(tmp_path: Path, inputs: dict[str, Path]) -> TrainingRequest:
    return make_request(
        tmp_path,
        inputs["model"],
        inputs["train"],
        head={"cut_at": "gap"},
        freeze="base",
        training={"epochs": 1},
    )


def _wait_ready(pool: TrainerPool) -> int:
    spare = pool.spare
    assert spare is not None
    assert spare.ready.wait(READY_TIMEOUT), "the warm trainer never finished importing"
    assert spare.pid is not None
    return spare.pid


def _loaded_tensorflow(pid: int) -> bool:
    """Whether TensorFlow's native library is mapped into the process ``pid``."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "_pywrap_tensorflow_internal" in maps or "libtensorflow_framework" in maps


def test_a_warm_child_runs_the_job_it_was_started_for_then_is_replaced(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    pool = TrainerPool(warm=True)
    try:
        pool.prepare()
        warm_pid = _wait_ready(pool)
        # TensorFlow is in the child before any request was sent: the job will not import it.
        assert _loaded_tensorflow(warm_pid)
        messages: list[ProgressMessage] = []

        outcome = pool.train(_request(tmp_path, inputs), messages.append, lambda: None)

        assert isinstance(outcome, TrainingOutcome) and outcome.metrics["loss"] > 0
        assert pool.last_was_warm and pool.last_pid == warm_pid
        assert [m.epoch for m in messages if isinstance(m, EpochEnded)] == [1]
        assert not is_alive(warm_pid)  # one job per child
        # Its replacement was started as the job began, for the next job.
        assert pool.spare is not None and pool.spare.pid not in (None, warm_pid)
        assert pool.spare.is_usable()
    finally:
        pool.close()
    assert trainer_pids() == []


def test_without_a_spare_the_job_gets_a_fresh_child(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    pool = TrainerPool(warm=False)
    pool.prepare()  # does nothing when warm is off
    assert pool.spare is None

    outcome = pool.train(_request(tmp_path, inputs), lambda message: None, lambda: None)

    assert outcome.metrics and not pool.last_was_warm
    assert pool.last_pid is not None and not is_alive(pool.last_pid)
    assert trainer_pids() == []


def test_a_spare_that_died_is_replaced_not_used(tmp_path: Path, inputs: dict[str, Path]) -> None:
    pool = TrainerPool(warm=True)
    try:
        pool.prepare()
        spare = pool.spare
        assert spare is not None
        spare.process.kill()
        spare.process.wait()

        outcome = pool.train(_request(tmp_path, inputs), lambda message: None, lambda: None)

        assert outcome.metrics and not pool.last_was_warm and pool.last_pid != spare.pid
    finally:
        pool.close()


@pytest.mark.slow
def test_the_worker_loop_runs_each_job_in_its_own_warm_child(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    services = build_services(
        Config(
            state_uri=f"file://{tmp_path / 'state'}",
            work_dir=tmp_path / "work",
            allow_local_storage=True,
            heartbeat_seconds=0.5,
            poll_seconds=0.2,
        )
    )
    specs = [
        JobSpecSchema().load(
            {
                "base_model": {"uri": f"file://{inputs['model']}"},
                "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
                "head": {"cut_at": "gap"},
                "freeze": "base",
                "training": {"epochs": 1, "seed": 2},
                # One output each: a job never replaces what another published.
                "output": {"uri": f"file://{tmp_path / f'out-{n}'}/"},
            }
        )
        for n in (1, 2)
    ]
    jobs = [services.jobs.create(spec) for spec in specs]
    worker = Worker(services)
    runs: list[tuple[int | None, bool]] = []
    train = worker.trainers.train

    def recording_train(*args: Any) -> TrainingOutcome:
        try:
            return train(*args)
        finally:
            runs.append((worker.trainers.last_pid, worker.trainers.last_was_warm))

    worker.trainers.train = recording_train  # type: ignore[method-assign]
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if all(services.jobs.get(job.id).is_final for job in jobs):
                break
            time.sleep(0.5)
    finally:
        worker.stopping.set()
        thread.join(60)
    assert [services.jobs.get(job.id).status for job in jobs] == [JobStatus.SUCCEEDED] * 2
    assert len(runs) == 2 and all(warm for _, warm in runs)
    assert runs[0][0] != runs[1][0]
    assert trainer_pids() == []  # the spare is stopped with the worker
