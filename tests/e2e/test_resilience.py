"""Jobs that survive: real worker processes killed, signalled, racing; storage cut and restored.

Every part is its own process: moto (S3 over HTTP), the API under gunicorn, workers started with
``python -m service worker``. Leases are short here (3 s) so lost workers are noticed quickly.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from service.jobs.checkpoints import CheckpointStore
from service.storage.s3 import S3ObjectStore
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.moto_server import MotoServer
from tests.helpers.net import free_port
from tests.helpers.processes import ApiClient, ServiceProcess, gunicorn_api, worker_process
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

FAST_LEASES = {
    "FINETUNE_LEASE_SECONDS": "3",
    "FINETUNE_HEARTBEAT_SECONDS": "0.5",
    "FINETUNE_SWEEP_SECONDS": "1",
    "FINETUNE_POLL_SECONDS": "0.2",
}


@dataclass
class Stack:
    """A state bucket, inputs in storage, an API, and a way to start workers."""

    env: dict[str, str]
    api: ServiceProcess
    client: ApiClient
    log_dir: Path
    state_bucket: str
    s3: Any
    workers: list[ServiceProcess]

    def worker(self, name: str, **extra_env: str) -> ServiceProcess:
        process = worker_process(name, {**self.env, **extra_env}, self.log_dir)
        self.workers.append(process)
        return process

    def spec(self, **overrides: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "base_model": {"uri": "s3://res-models/base/model.keras"},
            "dataset": {
                "train": "s3://res-data/train/",
                "preprocessing": "rescale",
                "validation_split": 0.1,
            },
            "head": {"cut_at": "gap", "hidden_units": [16]},
            "freeze": {"first_n": 5},
            "training": {"epochs": 6, "batch_size": 16, "learning_rate": 0.003, "seed": 5},
            "output": {"uri": f"s3://res-models/out/{random.randrange(10**9)}/"},
            "limits": {"max_attempts": 5},
        }
        for key, value in overrides.items():
            spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
        return spec

    def logs(self) -> tuple[ServiceProcess, ...]:
        return (self.api, *self.workers)


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Any:
    """A pretrained model and 600 images in moto (epochs long enough to be interrupted)."""
    root = tmp_path_factory.mktemp("resilience-inputs")
    pretrain_tiny_cnn(root / "model.keras", epochs=3, per_class=40)
    write_image_folder(root / "train", ["a", "b", "c", "d"], per_class=150, digits=[0, 1, 2, 3])
    s3 = _s3(moto_server.endpoint)
    for bucket in ("res-models", "res-data"):
        s3.create_bucket(Bucket=bucket)
    S3ObjectStore(s3, "res-models").upload_file(root / "model.keras", "base/model.keras")
    S3ObjectStore(s3, "res-data").upload_dir(root / "train", "train/")
    return s3


def _stack(tmp_path: Path, endpoint: str, s3: Any, api_workers: int = 2) -> Stack:
    state_bucket = f"res-state-{random.randrange(10**9)}"
    s3.create_bucket(Bucket=state_bucket)
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FINETUNE_STATE_URI": f"s3://{state_bucket}/jobs",
        "FINETUNE_WORK_DIR": str(tmp_path / "work"),
        **FAST_LEASES,
    }
    port = free_port()
    api = gunicorn_api(port, env, tmp_path, workers=api_workers)
    return Stack(env, api, ApiClient(f"http://127.0.0.1:{port}"), tmp_path, state_bucket, s3, [])


@pytest.fixture
def stack(tmp_path: Path, moto_server: MotoServer, inputs: Any) -> Iterator[Stack]:
    """A fresh job store and API per test, on the shared moto server."""
    stack = _stack(tmp_path, moto_server.endpoint, inputs)
    yield stack
    for process in stack.workers:
        process.stop()
    stack.api.stop()


def _wait_for_epoch(
    stack: Stack, job_id: str, epoch: int, timeout: float = 180, attempt: int = 1
) -> dict[str, Any]:
    """Wait until attempt ``attempt`` (or a later one) runs at ``epoch`` or beyond.

    ``attempt`` keeps a killed worker's last progress, still on the record until its lease runs
    out, from passing for the next worker's.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stack.client.job(job_id)
        if (
            job["status"] == "running"
            and job["attempt"] >= attempt
            and job["progress"]["epoch"] >= epoch
        ):
            return job
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached epoch {epoch}")


def _wait_for_checkpoint(stack: Stack, job_id: str, epoch: int, timeout: float = 60) -> None:
    """Wait until the state bucket holds the job's checkpoint after ``epoch`` (or a later one).

    The worker publishes an epoch's progress before it has uploaded that epoch's checkpoint: a
    kill in between rightly resumes from the one before.
    """
    checkpoints = CheckpointStore(S3ObjectStore(stack.s3, stack.state_bucket), "jobs/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = checkpoints.latest(job_id)
        if latest is not None and latest.epoch >= epoch:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} has no checkpoint after epoch {epoch}")


def _wait_for_resume(stack: Stack, job_id: str, attempt: int, timeout: float = 180) -> int:
    """Wait for attempt ``attempt``'s resumed event; the epoch it resumed after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _events(stack, job_id, "resumed"):
            if event["data"]["attempt"] == attempt:
                return int(event["data"]["epoch"])
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}'s attempt {attempt} never resumed")


def _events(stack: Stack, job_id: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in stack.client.events(job_id) if e["type"] == type_]


def test_kill_9_mid_epoch_resumes_from_the_checkpoint(stack: Stack) -> None:
    rng = random.Random()
    job = stack.client.submit(stack.spec())
    worker = stack.worker("w1")
    resumed_at = 0
    for kill in range(2):  # two random kill points in one run
        if kill:
            # The new worker's own word: until it trains, the record shows the killed one's
            # progress, and the checkpoints it finds were the killed one's.
            resumed_at = _wait_for_resume(stack, job["id"], attempt=kill + 1)
        target = min(resumed_at + rng.choice([1, 2]), 5)  # of 6 epochs
        _wait_for_epoch(stack, job["id"], target, attempt=kill + 1)
        _wait_for_checkpoint(stack, job["id"], target)
        time.sleep(rng.uniform(0.05, 0.4))  # somewhere inside the next epoch
        worker.signal(signal.SIGKILL)  # the worker and its trainer child, no warning
        worker = stack.worker(f"w{kill + 2}")
    final = stack.client.wait(job["id"], timeout=300, logs=stack.logs())
    assert final["status"] == "succeeded", final["error"]
    assert final["attempt"] >= 3
    resumed = _events(stack, job["id"], "resumed")
    assert len(resumed) >= 2
    assert all(event["data"]["epoch"] > 0 for event in resumed)
    requeued = _events(stack, job["id"], "requeued")
    assert all(event["data"]["reason"] == "lease_expired" for event in requeued)
    # It did not start over: at most the interrupted epoch is run again after each kill.
    epochs = _events(stack, job["id"], "epoch")
    assert len(epochs) <= 6 + len(resumed)
    assert len(final["result"]["history"]) == 6
    assert [entry["epoch"] for entry in final["result"]["history"]] == [1, 2, 3, 4, 5, 6]


def test_sigterm_hands_the_job_back_within_the_grace_period(stack: Stack) -> None:
    job = stack.client.submit(stack.spec())
    first = stack.worker("w-terminated", FINETUNE_SHUTDOWN_GRACE_SECONDS="20")
    _wait_for_epoch(stack, job["id"], 2)
    signalled = time.monotonic()
    assert first.process is not None
    first.process.send_signal(signal.SIGTERM)  # what Kubernetes sends, to the worker alone
    deadline = signalled + 20
    while not _events(stack, job["id"], "requeued"):
        assert time.monotonic() < deadline, "not requeued within the grace period"
        time.sleep(0.1)
    assert stack.client.job(job["id"])["status"] in ("queued", "running")
    first.process.wait(timeout=20)
    stack.worker("w-next")
    final = stack.client.wait(job["id"], timeout=300, logs=stack.logs())
    assert final["status"] == "succeeded", final["error"]
    assert final["attempt"] == 2
    requeued = _events(stack, job["id"], "requeued")
    assert requeued[0]["data"]["reason"] == "the worker is shutting down"
    claims = _events(stack, job["id"], "claimed")
    assert len(claims) == 2
    assert claims[0]["data"]["worker"] != claims[1]["data"]["worker"]
    assert _events(stack, job["id"], "resumed")[0]["data"]["epoch"] >= 1


@pytest.mark.full  # a soak: the one-API one-worker scenarios above stay in the fast subset
def test_many_submits_through_two_apis_and_two_workers(
    tmp_path: Path, moto_server: MotoServer, inputs: Any
) -> None:
    stack = _stack(tmp_path, moto_server.endpoint, inputs)
    second_port = free_port()
    second_api = gunicorn_api(second_port, stack.env, tmp_path, workers=2)
    clients = [stack.client, ApiClient(f"http://127.0.0.1:{second_port}")]
    for name in ("wa", "wb"):
        stack.worker(name)
    count = 200
    # Fast jobs: dataset.format says npz but train is a folder, so each is claimed, refused
    # while staging (before any trainer), failed and recorded.
    spec = stack.spec(dataset={"format": "npz"})
    state = S3ObjectStore(stack.s3, stack.state_bucket)
    versions: dict[str, list[int]] = {}
    stop_sampling = threading.Event()

    def sample() -> None:
        # Reads a few records straight from the bucket again and again, as a replica would.
        rng = random.Random(7)
        while not stop_sampling.is_set():
            keys = [info.key for info in state.list("jobs/jobs/")]
            for key in rng.sample(keys, min(10, len(keys))):
                job_id = key.rsplit("/", 1)[1].removesuffix(".json")
                versions.setdefault(job_id, []).append(json.loads(state.get(key).data)["version"])
            stop_sampling.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            created = list(pool.map(lambda i: clients[i % 2].submit(spec)["id"], range(count)))
        deadline = time.monotonic() + 240
        pending = set(created)
        while pending and time.monotonic() < deadline:
            for job_id in sorted(pending):  # oldest first; stop at the first one still going
                if clients[0].job(job_id)["status"] not in ("failed", "succeeded", "cancelled"):
                    break
                pending.discard(job_id)
            time.sleep(0.5)
        assert not pending, f"{len(pending)} jobs never finished"
        stop_sampling.set()
        sampler.join(timeout=30)
        _check_all_jobs_once(stack, clients, created, versions)
    finally:
        stop_sampling.set()
        for process in stack.workers:
            process.stop()
        second_api.stop()
        stack.api.stop()


def _check_all_jobs_once(
    stack: Stack, clients: list[ApiClient], created: list[str], versions: dict[str, list[int]]
) -> None:
    assert len(set(created)) == len(created)
    listed: list[str] = []
    cursor = None
    while True:
        url = f"{clients[1].base_url}/v1/jobs?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = requests.get(url, timeout=30).json()
        listed += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(listed) == sorted(created)  # no job lost
    for job_id in created:
        job = clients[0].job(job_id)
        assert job["status"] == "failed" and job["error"]["code"] == "invalid_dataset"
        assert job["attempt"] == 1  # none ran twice
        claims = _events(stack, job_id, "claimed")
        assert len(claims) == 1
        seen = versions.get(job_id, [])
        assert seen == sorted(seen), f"{job_id} versions went back: {seen}"


def test_storage_outage_gives_503_and_jobs_complete_after(
    tmp_path: Path, moto_server: MotoServer, inputs: Any
) -> None:
    proxy = TcpProxy("127.0.0.1", moto_server.port).start()
    stack = _stack(tmp_path, proxy.endpoint, inputs)
    try:
        stack.worker("w-outage")
        job = stack.client.submit(stack.spec())
        _wait_for_epoch(stack, job["id"], 1)
        proxy.stop()
        started = time.monotonic()
        response = requests.get(f"{stack.client.base_url}/v1/jobs/{job['id']}", timeout=60)
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert "Traceback" not in response.text and response.json()["code"] == 503
        ready = requests.get(f"{stack.client.base_url}/readyz", timeout=60)
        assert ready.status_code == 503
        time.sleep(max(0.0, 6 - (time.monotonic() - started)))
        proxy.start()
        final = stack.client.wait(job["id"], timeout=300, logs=stack.logs())
        epochs = [e["data"]["epoch"] for e in _events(stack, job["id"], "epoch")]
    finally:
        for process in stack.workers:
            process.stop()
        stack.api.stop()
        proxy.stop()
    assert final["status"] == "succeeded", final["error"]
    record = json.loads(
        S3ObjectStore(stack.s3, stack.state_bucket).get(f"jobs/jobs/{job['id']}.json").data
    )
    assert record["status"] == "succeeded" and record["version"] > 3
    assert epochs == sorted(epochs) and epochs[-1] == 6  # events caught up, in order
