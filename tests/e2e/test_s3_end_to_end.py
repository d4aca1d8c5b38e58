"""One real job the whole way, every part its own process.

moto in server mode (S3 over HTTP), the API under gunicorn with 2 workers, and a worker
process; the test uploads a pretrained model and images, submits, polls, downloads the
SavedModel from the S3 server and checks it learned.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from service.storage.s3 import S3ObjectStore
from tests.e2e.scenario import CLASSES, assert_succeeded_job, held_out_accuracy, job_spec, prepare
from tests.helpers.moto_server import MotoServer
from tests.helpers.net import free_port
from tests.helpers.processes import ApiClient, gunicorn_api, worker_process

pytestmark = pytest.mark.slow


def test_fine_tune_job_end_to_end_on_s3(tmp_path: Path, moto_server: MotoServer) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for bucket in ("e2e-models", "e2e-data", "e2e-state"):
        s3.create_bucket(Bucket=bucket)
    scenario = prepare(tmp_path / "local")
    S3ObjectStore(s3, "e2e-models").upload_file(scenario.base_model, "base/v1/model.keras")
    S3ObjectStore(s3, "e2e-data").upload_dir(scenario.train_dir, "digits/train/")

    env = {
        **moto_server.env,
        "FINETUNE_STATE_URI": "s3://e2e-state/finetune",
        "FINETUNE_WORK_DIR": str(tmp_path / "work"),
        "FINETUNE_POLL_SECONDS": "0.2",
        "FINETUNE_HEARTBEAT_SECONDS": "1",
    }
    port = free_port()
    api = gunicorn_api(port, env, tmp_path, workers=2)
    worker = worker_process("worker", env, tmp_path)
    try:
        client = ApiClient(f"http://127.0.0.1:{port}")
        spec = job_spec(
            "s3://e2e-models/base/v1/model.keras",
            "s3://e2e-data/digits/train/",
            "s3://e2e-models/out/v2/",
        )
        # The dry run through the real app: the API hands it to the worker, which inspects a
        # sample in a trainer child.
        dry = client.validate(spec)
        assert dry.status_code == 200, dry.text
        assert dry.json()["valid"] is True
        assert dry.json()["data"]["train"]["class_names"] == sorted(CLASSES)
        job = client.submit(spec)
        assert job["status"] == "queued"
        final = client.wait(job["id"], timeout=400, logs=(api, worker))
        events = client.events(job["id"])
    finally:
        worker.stop()
        api.stop()

    assert_succeeded_job(final, events)
    result = final["result"]
    assert result["saved_model_uri"] == "s3://e2e-models/out/v2/saved_model/"
    assert result["keras_uri"] == "s3://e2e-models/out/v2/model.keras"

    out = S3ObjectStore(s3, "e2e-models")
    keys = [info.key for info in out.list("out/v2/")]
    assert "out/v2/model.keras" in keys and "out/v2/saved_model/saved_model.pb" in keys
    assert "out/v2/history.png" in keys
    assert any(key.startswith("out/v2/tensorboard/train/events.out.tfevents.") for key in keys)
    manifest = json.loads(out.get("out/v2/manifest.json").data)
    assert manifest["job_id"] == job["id"]
    assert manifest["class_names"] == result["class_names"]
    assert len(manifest["inputs"]["base_model"]["sha256"]) == 64
    assert len(manifest["inputs"]["dataset"]["dataset.train"]["files"]) == 240

    out.download_prefix("out/v2/saved_model/", tmp_path / "downloaded")
    accuracy = held_out_accuracy(tmp_path / "downloaded", scenario)
    assert accuracy >= 0.6, f"held-out accuracy {accuracy:.2f} is not clearly above chance (0.25)"
