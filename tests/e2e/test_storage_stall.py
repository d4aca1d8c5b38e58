"""Stalled storage never hangs the API: every storage-bound endpoint answers 503 quickly.

A stall is not a refusal: the S3 server is frozen with SIGSTOP, so connections are accepted
(by the kernel) and nothing is ever answered. Real parts throughout: moto over HTTP, the API
under gunicorn with the project's gunicorn.conf.py, a worker running a real job meanwhile.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from service.storage.client import make_s3_client
from service.storage.s3 import S3ObjectStore
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.moto_server import MotoServer
from tests.helpers.net import free_port
from tests.helpers.processes import ApiClient, gunicorn_api, worker_process

pytestmark = pytest.mark.slow

#: The promise: an answer within this many seconds while storage stalls.
ANSWER_WITHIN_SECONDS = 10


@dataclass(frozen=True)
class Answer:
    """What one endpoint answered during the stall, and after how long."""

    what: str
    status: int
    retry_after: str | None
    body: dict[str, Any]
    seconds: float


@pytest.fixture
def own_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A moto server of this test alone (it is frozen, the others must not be), in the env."""
    with MotoServer() as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        yield server


def _spec(output: str) -> dict[str, Any]:
    return {
        "base_model": {"uri": "s3://stall-models/base/model.keras"},
        "dataset": {"train": "s3://stall-data/train/", "preprocessing": "rescale"},
        "head": {"cut_at": "gap", "hidden_units": [8]},
        "training": {"epochs": 8, "batch_size": 16, "seed": 3},
        "output": {"uri": output},
    }


def _ask(base: str, what: str, method: str, path: str, body: Any = None) -> Answer:
    started = time.monotonic()
    response = requests.request(
        method, base + path, json=body, timeout=ANSWER_WITHIN_SECONDS
    )  # a Timeout here fails the test: the answer came too late or never
    seconds = time.monotonic() - started
    return Answer(
        what, response.status_code, response.headers.get("Retry-After"), response.json(), seconds
    )


def test_stalled_storage_gives_503_within_seconds_and_the_job_rides_it_out(
    tmp_path: Path, own_moto: MotoServer
) -> None:
    s3 = make_s3_client()
    for bucket in ("stall-state", "stall-models", "stall-data"):
        s3.create_bucket(Bucket=bucket)
    pretrain_tiny_cnn(tmp_path / "model.keras", epochs=2, per_class=20)
    write_image_folder(tmp_path / "train", ["a", "b"], per_class=120, digits=[0, 1])
    S3ObjectStore(s3, "stall-models").upload_file(tmp_path / "model.keras", "base/model.keras")
    S3ObjectStore(s3, "stall-data").upload_dir(tmp_path / "train", "train/")
    env = {
        **own_moto.env,
        "FINETUNE_STATE_URI": "s3://stall-state/jobs",
        "FINETUNE_WORK_DIR": str(tmp_path / "work"),
        "FINETUNE_POLL_SECONDS": "0.2",
        "FINETUNE_HEARTBEAT_SECONDS": "1",
        # More threads than requests in flight: none waits for a thread, only for storage.
        "GUNICORN_THREADS": "8",
    }
    port = free_port()
    api = gunicorn_api(port, env, tmp_path, workers=2)
    worker = worker_process("worker", env, tmp_path)
    client = ApiClient(f"http://127.0.0.1:{port}")
    base = client.base_url
    try:
        running = client.submit(_spec(f"s3://stall-models/out/{random.randrange(10**9)}/"))
        queued = client.submit(_spec("s3://stall-models/out/queued/"))
        deadline = time.monotonic() + 180
        while client.job(running["id"])["progress"]["epoch"] < 1:
            assert time.monotonic() < deadline, worker.log()[-4000:]
            time.sleep(0.2)

        own_moto.stall()
        stalled_at = time.monotonic()
        asks = [
            ("GET job", "GET", f"/v1/jobs/{running['id']}", None),
            ("GET jobs", "GET", "/v1/jobs", None),
            ("GET events", "GET", f"/v1/jobs/{running['id']}/events", None),
            ("POST job", "POST", "/v1/jobs", _spec("s3://stall-models/out/new/")),
            ("POST cancel", "POST", f"/v1/jobs/{queued['id']}/cancel", None),
            # ("POST validate", "POST", "/v1/jobs/validate", _spec("s3://stall-models/out/v/")),
            ("GET readyz", "GET", "/readyz", None),
        ]
        with ThreadPoolExecutor(len(asks)) as pool:
            pending = [pool.submit(_ask, base, *ask) for ask in asks]
            # Liveness while every storage-bound request hangs on storage.
            health = _ask(base, "GET healthz", "GET", "/healthz")
            answers = [future.result() for future in pending]
        stalled_for = time.monotonic() - stalled_at
        own_moto.resume()

        final = client.wait(running["id"], timeout=300, logs=(api, worker))
        requests.post(f"{base}/v1/jobs/{queued['id']}/cancel", timeout=30)
    finally:
        own_moto.resume()
        worker.stop()
        api.stop()

    print(f"storage stalled for {stalled_for:.1f} s; answers:")
    for answer in [health, *answers]:
        print(f"  {answer.what}: {answer.status} in {answer.seconds:.2f} s")
    assert health.status == 200 and health.body == {"status": "ok"}
    for answer in answers:
        assert answer.status == 503, answer
        assert answer.retry_after and int(answer.retry_after) > 0, answer
        assert answer.body["code"] == 503 and "Traceback" not in answer.body["message"]
    # The worker kept its patient waits: the job it was running went on and succeeded.
    assert final["status"] == "succeeded", final["error"]
