"""Workers that claim only what they can hold, and a two-device job that survives kill -9.

Every part is its own process: moto (S3 over HTTP), the API under gunicorn, workers started with
``python -m service worker``. A worker without FINETUNE_LOGICAL_DEVICES holds one device; one
with FINETUNE_LOGICAL_DEVICES=2 splits its CPU into two (no machine with several GPUs was at
hand: logical CPU devices are TensorFlow's stand-in for them).
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.storage.s3 import S3ObjectStore
from tests.e2e.test_resilience import Stack, _events, _s3, _stack, _wait_for_epoch
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.moto_server import MotoServer
from tests.helpers.processes import ServiceProcess

# The full matrix only: tests/worker/test_multi_device.py trains, resumes and serves a two-device
# job in the fast subset; this one adds the second worker that cannot hold it and a kill -9.
pytestmark = [pytest.mark.slow, pytest.mark.full]

#: A worker whose trainer child is started when a job comes (the one that said what it holds).
ONE_CHILD = {"FINETUNE_WARM_TRAINER": "0"}
TWO_DEVICES = {**ONE_CHILD, "FINETUNE_LOGICAL_DEVICES": "2"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Any:
    """A pretrained tiny CNN and 240 32x32 images in moto."""
    root = tmp_path_factory.mktemp("multi-device-inputs")
    pretrain_tiny_cnn(root / "model.keras", epochs=2, per_class=30)
    write_image_folder(root / "train", ["a", "b", "c", "d"], per_class=60, digits=[0, 1, 2, 3])
    s3 = _s3(moto_server.endpoint)
    for bucket in ("md-models", "md-data"):
        s3.create_bucket(Bucket=bucket)
    S3ObjectStore(s3, "md-models").upload_file(root / "model.keras", "base/model.keras")
    S3ObjectStore(s3, "md-data").upload_dir(root / "train", "train/")
    return s3


@pytest.fixture
def stack(tmp_path: Path, moto_server: MotoServer, inputs: Any) -> Iterator[Stack]:
    """A fresh job store and API, on the shared moto server."""
    stack = _stack(tmp_path, moto_server.endpoint, inputs)
    yield stack
    for process in stack.workers:
        process.stop()
    stack.api.stop()


def _worker_of(process: ServiceProcess) -> str:
    """The part of a worker id its process id makes (``host-pid-random``)."""
    assert process.process is not None
    return f"-{process.process.pid}-"


def _wait_for_event(stack: Stack, job_id: str, type_: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _events(stack, job_id, type_)
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no {type_} event for {job_id} in {timeout}s")


def test_a_two_device_job_waits_for_a_worker_that_holds_it_and_resumes_after_kill_9(
    stack: Stack,
) -> None:
    spec = stack.spec(
        base_model={"uri": "s3://md-models/base/model.keras"},
        dataset={"train": "s3://md-data/train/", "validation_split": 0.1},
        training={"epochs": 4, "batch_size": 16},
        output={"uri": f"s3://md-models/out/{random.randrange(10**9)}/"},
    )
    spec["resources"] = {"gpus": 2}
    job = stack.client.submit(spec)
    small = stack.worker("one-device", **ONE_CHILD)

    waiting = _wait_for_event(stack, job["id"], "waiting", timeout=240)

    # Said by the API at submit, before any worker ran (the one-device worker, seeing it written,
    # does not say it again; tests/worker/test_waiting.py has a worker saying it first).
    assert waiting["data"] == {"devices": 2, "most_held": 0}
    assert "Waiting for a worker with 2 devices" in waiting["message"]
    assert "no worker is running" in waiting["message"]
    assert stack.client.job(job["id"])["status"] == "queued"

    big = stack.worker("two-devices", **TWO_DEVICES)
    seen = _wait_for_epoch(stack, job["id"], 1, timeout=300)
    assert _worker_of(big) in seen["lease"]["worker"]
    time.sleep(random.uniform(0.05, 0.3))  # somewhere inside the next epoch
    big.signal(signal.SIGKILL)  # the worker and its trainer child, no warning
    again = stack.worker("two-devices-again", **TWO_DEVICES)

    final = stack.client.wait(job["id"], timeout=400, logs=stack.logs())

    assert final["status"] == "succeeded", final["error"]
    assert [entry["epoch"] for entry in final["result"]["history"]] == [1, 2, 3, 4]
    claimed = [event["data"]["worker"] for event in _events(stack, job["id"], "claimed")]
    assert len(claimed) == 2
    assert _worker_of(big) in claimed[0] and _worker_of(again) in claimed[1]
    assert not any(_worker_of(small) in worker for worker in claimed)
    resumed = _events(stack, job["id"], "resumed")
    assert len(resumed) == 1 and resumed[0]["data"]["epoch"] >= 1
    strategies = [e["data"] for e in _events(stack, job["id"], "info") if "strategy" in e["data"]]
    assert len(strategies) == 2  # one per attempt
    assert all(s["strategy"] == "MirroredStrategy" and s["replicas"] == 2 for s in strategies)
    assert len(_events(stack, job["id"], "waiting")) == 1  # said once, not every poll
