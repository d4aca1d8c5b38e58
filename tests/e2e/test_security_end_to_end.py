"""Security through the real processes: gunicorn (API), a worker, a moto S3 server.

- tokens under gunicorn: 401, the probes open, 413 for a body over the limit, a bad auth file
  refusing to start (gunicorn and ``python -m service serve``);
- one real fine-tuning job with tokens configured and AWS credentials set to distinctive
  values (moto accepts any): while it trains, the trainer process's environment holds no
  credentials; afterwards no configured secret appears in any log line (gunicorn's and the
  worker's), any event, any job record or object of the job store, or the manifest.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from service.storage.s3 import S3ObjectStore
from service.worker.child_runner import CHILD_MODULE
from tests.e2e.scenario import prepare
from tests.helpers.auth import write_auth_file
from tests.helpers.moto_server import MotoServer
from tests.helpers.net import free_port
from tests.helpers.processes import (
    VENV_BIN,
    ApiClient,
    ServiceProcess,
    gunicorn_api,
    worker_process,
)

#: Credentials the service runs with: moto accepts any, these are easy to grep for.
ACCESS_KEY_ID = "AKIAZZSECURITYE2E0001"
SECRET_ACCESS_KEY = "Sec2eSecretAccessKey/do+not+log/0123456789abcdef"


def _auth_env(
    tmp_path: Path, moto_server: MotoServer, tenants: dict[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    tokens = write_auth_file(tmp_path / "auth.json", tenants)
    env = {
        **moto_server.env,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "FINETUNE_AUTH_FILE": str(tmp_path / "auth.json"),
        "FINETUNE_WORK_DIR": str(tmp_path / "work"),
        "FINETUNE_POLL_SECONDS": "0.2",
        "FINETUNE_HEARTBEAT_SECONDS": "1",
    }
    return env, tokens


def _s3(moto_server: MotoServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def test_tokens_limits_and_a_bad_auth_file_under_gunicorn(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    s3 = _s3(moto_server)
    s3.create_bucket(Bucket="sec-fast-state")
    env, tokens = _auth_env(
        tmp_path, moto_server, {"team-a": {"read": ["s3://sec-fast/a/"], "write": []}}
    )
    env["FINETUNE_STATE_URI"] = "s3://sec-fast-state/finetune"
    port = free_port()
    api = gunicorn_api(port, env, tmp_path, workers=1)
    base = f"http://127.0.0.1:{port}"
    try:
        unauthenticated = requests.get(f"{base}/v1/jobs", timeout=10)
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="finetune"'
        wrong = requests.get(
            f"{base}/v1/jobs", headers={"Authorization": "Bearer ftk_wrong"}, timeout=10
        )
        assert wrong.status_code == 401 and "invalid_token" in wrong.headers["WWW-Authenticate"]
        good = {"Authorization": f"Bearer {tokens['team-a']}"}
        assert requests.get(f"{base}/v1/jobs", headers=good, timeout=10).status_code == 200
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
        assert requests.get(f"{base}/openapi.json", timeout=10).status_code == 200
        too_big = requests.post(
            f"{base}/v1/jobs",
            data=b"[" + b" " * (2 << 20) + b"]",
            headers={**good, "Content-Type": "application/json"},
            timeout=30,
        )
        assert too_big.status_code == 413
        assert too_big.json()["code"] == 413 and "1048576 bytes" in too_big.json()["message"]
    finally:
        api.stop()
    log = api.log()
    assert tokens["team-a"] not in log and SECRET_ACCESS_KEY not in log
    assert '"GET /v1/jobs HTTP/1.1" 401' in log  # the access log is on, without headers

    bad = tmp_path / "bad-auth.json"
    bad.write_text(json.dumps({"tenants": {"team-a": {"tokens": [{"sha256": "ftk_oops"}]}}}))
    refused_env = {**env, "FINETUNE_AUTH_FILE": str(bad)}
    for name, argv in (
        (
            "gunicorn-bad-auth",
            [
                str(VENV_BIN / "gunicorn"),
                "-c",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{free_port()}",
                "--workers",
                "1",
                "service.app:create_app()",
            ],
        ),
        ("serve-bad-auth", [sys.executable, "-m", "service", "serve", "--port", "0"]),
    ):
        process = ServiceProcess(name, argv, refused_env, tmp_path).start()
        assert process.process is not None
        try:
            code = process.process.wait(timeout=90)
        finally:
            process.stop()
        assert code != 0, process.log()
        assert "never the token itself" in process.log() and str(bad) in process.log()


def _children(pid: int) -> Iterator[int]:
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        yield from (int(child) for child in children)


def _trainer_environments(worker_pid: int) -> list[bytes]:
    """The environment blocks of the worker's trainer children (``python -m service.trainer``)."""
    found = []
    for child in _children(worker_pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if CHILD_MODULE.encode() in cmdline.split(b"\0"):
                found.append(Path(f"/proc/{child}/environ").read_bytes())
        except OSError:
            continue  # exited meanwhile
    return found


@pytest.mark.slow
def test_no_secret_reaches_a_log_an_event_a_record_or_the_manifest(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    s3 = _s3(moto_server)
    for bucket in ("sec-models", "sec-data", "sec-state"):
        s3.create_bucket(Bucket=bucket)
    scenario = prepare(tmp_path / "local")
    S3ObjectStore(s3, "sec-models").upload_file(scenario.base_model, "team-a/base/model.keras")
    S3ObjectStore(s3, "sec-data").upload_dir(scenario.train_dir, "team-a/digits/")
    # Stored (submit checks that), but no model: the job fails in the trainer.
    S3ObjectStore(s3, "sec-models").put("team-a/broken.keras", b"not a model")
    env, tokens = _auth_env(
        tmp_path,
        moto_server,
        {
            "team-a": {
                "read": ["s3://sec-models/team-a/", "s3://sec-data/team-a/"],
                "write": ["s3://sec-models/team-a/out/"],
            },
            "team-b": {"read": ["s3://sec-data/team-b/"], "write": ["s3://sec-models/team-b/"]},
        },
    )
    env["FINETUNE_STATE_URI"] = "s3://sec-state/finetune"
    env["FINETUNE_TOKEN"] = tokens["team-a"]  # as a CLI user might leave it in the environment
    secrets = [SECRET_ACCESS_KEY, ACCESS_KEY_ID, tokens["team-a"], tokens["team-b"]]

    port = free_port()
    api = gunicorn_api(port, env, tmp_path, workers=2)
    worker = worker_process("worker", env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        client = ApiClient(base, token=tokens["team-a"])
        spec = {
            "name": "secrets-e2e",
            "base_model": {"uri": "s3://sec-models/team-a/base/model.keras"},
            "dataset": {"train": "s3://sec-data/team-a/digits/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap", "hidden_units": [16]},
            "training": {"epochs": 2, "batch_size": 32, "learning_rate": 0.003, "seed": 1},
            "output": {"uri": "s3://sec-models/team-a/out/v2/"},
        }
        job = client.submit(spec)
        failing = client.submit(
            {**spec, "base_model": {"uri": "s3://sec-models/team-a/broken.keras"}}
        )
        # Requests that carry secrets where a careless log would keep them.
        requests.get(f"{base}/v1/jobs?token={tokens['team-a']}", timeout=10)
        requests.get(f"{base}/v1/jobs", headers={"Authorization": "Bearer ftk_wrong"}, timeout=10)
        outsider = requests.post(
            f"{base}/v1/jobs",
            json={**spec, "dataset": {"train": "s3://sec-data/team-b/x/"}},
            headers={"Authorization": f"Bearer {tokens['team-a']}"},
            timeout=10,
        )
        assert outsider.status_code == 403

        assert worker.process is not None
        environments: list[bytes] = []
        deadline = time.monotonic() + 400
        while client.job(job["id"])["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, worker.log()[-4000:]
            environments += _trainer_environments(worker.process.pid)
            time.sleep(0.2)
        final = client.job(job["id"])
        failed = client.wait(failing["id"], timeout=120, logs=(api, worker))
        events = client.events(job["id"]) + client.events(failing["id"])
    finally:
        worker.stop()
        api.stop()

    assert final["status"] == "succeeded", final.get("error")
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_model"
    assert environments, "the trainer process was never seen running"
    for environ in environments:
        assert b"AWS_" not in environ and b"FINETUNE_TOKEN" not in environ
        for secret in secrets:
            assert secret.encode() not in environ

    texts: dict[str, str] = {
        "gunicorn log": api.log(),
        "worker log": worker.log(),
        "events": json.dumps(events),
        "job answers": json.dumps([final, failed]),
    }
    state = S3ObjectStore(s3, "sec-state")
    for info in state.list("finetune/"):
        texts[f"s3://sec-state/{info.key}"] = state.get(info.key).data.decode()
    manifest_key = final["result"]["manifest_uri"].removeprefix("s3://sec-models/")
    texts["manifest"] = S3ObjectStore(s3, "sec-models").get(manifest_key).data.decode()

    # What was grepped is real: the logs have the requests and the job, the store its records.
    assert f"/v1/jobs/{job['id']}" in texts["gunicorn log"]
    assert job["id"] in texts["worker log"] and "trainer process" in texts["worker log"]
    assert any(key.endswith(f"jobs/{job['id']}.json") for key in texts)
    assert json.loads(texts["manifest"])["job_id"] == job["id"]
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret appears in {where}"
