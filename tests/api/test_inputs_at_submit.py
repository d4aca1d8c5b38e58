"""POST /v1/jobs refuses a spec whose base model, weights or data are not stored (422 naming
the field), on local storage and on a real S3 server (moto over HTTP), and under gunicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from schemas import JobSpecSchema
from service.api.inputs import InputChecks
from service.app import create_app
from service.config import Config
from service.contract.plan import JobPlan
from service.storage import Storage, make_s3_client
from tests.conftest import S3Client
from tests.helpers.net import free_port
from tests.helpers.processes import gunicorn_api


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A model file, a SavedModel folder, an image folder, a TFRecord file and an empty folder."""
    root = tmp_path / "inputs"
    for name in ("model.keras", "saved/saved_model.pb", "train/cat/1.png", "records/a.tfrecord"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "empty").mkdir()
    return root


def _spec(model: str, train: str, **extra: Any) -> dict[str, Any]:
    return {
        "base_model": {"uri": model},
        "dataset": {"train": train},
        "output": extra.pop("output", {"uri": "file:///tmp/finetune-test-out/"}),
        **extra,
    }


def _errors(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.get_json()
    assert "not stored" in response.get_json()["message"]
    errors: dict[str, Any] = response.get_json()["errors"]["json"]
    return errors


@pytest.mark.parametrize(
    ("model", "train"),
    [
        ("model.keras", "train/"),
        ("model.keras", "train"),  # a folder named without its '/'
        ("saved/", "train/cat/"),
        ("model.keras", "records/a.tfrecord"),
        ("model.keras", "records/*.tfrecord"),
    ],
)
def test_stored_inputs_are_queued(local_app: Flask, inputs: Path, model: str, train: str) -> None:
    spec = _spec(f"file://{inputs}/{model}", f"file://{inputs}/{train}")
    response = local_app.test_client().post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize(
    ("model", "train", "field", "words"),
    [
        ("modle.keras", "train/", ("base_model", "uri"), "no file at"),
        ("saved", "train/", ("base_model", "uri"), "SavedModel folder's URI ends with '/'"),
        ("empty/", "train/", ("base_model", "uri"), "nothing is stored under"),
        ("model.keras", "trian/", ("dataset", "train"), "nothing is stored under"),
        ("model.keras", "trian", ("dataset", "train"), "no folder by that name"),
        ("model.keras", "records/*.tfrec", ("dataset", "train"), "no files match"),
    ],
)
def test_a_missing_input_is_422_naming_its_field(
    local_app: Flask, inputs: Path, model: str, train: str, field: tuple[str, str], words: str
) -> None:
    spec = _spec(f"file://{inputs}/{model}", f"file://{inputs}/{train}")
    errors = _errors(local_app.test_client().post("/v1/jobs", json=spec))
    assert list(errors) == [field[0]] and list(errors[field[0]]) == [field[1]], errors
    assert words in errors[field[0]][field[1]][0]
    assert local_app.test_client().get("/v1/jobs").get_json()["jobs"] == []


def test_every_missing_input_is_named_at_once(local_app: Flask, inputs: Path) -> None:
    spec = _spec(
        f"file://{inputs}/nope.keras",
        f"file://{inputs}/nope/",
        dataset={"train": f"file://{inputs}/nope/", "validation": f"file://{inputs}/gone/"},
    )
    errors = _errors(local_app.test_client().post("/v1/jobs", json=spec))
    assert set(errors) == {"base_model", "dataset"}
    assert set(errors["dataset"]) == {"train", "validation"}


def test_a_missing_test_set_or_model_to_compare_with_is_named(
    local_app: Flask, inputs: Path
) -> None:
    spec = _spec(
        f"file://{inputs}/model.keras",
        f"file://{inputs}/train/",
        dataset={"train": f"file://{inputs}/train/", "test": f"file://{inputs}/holdout/"},
        compare_with={"model_uri": f"file://{inputs}/champion.keras"},
    )
    errors = _errors(local_app.test_client().post("/v1/jobs", json=spec))
    assert errors == {
        "dataset": {"test": [f"nothing is stored under file://{inputs}/holdout/."]},
        "compare_with": {
            "model_uri": [
                f"no file at file://{inputs}/champion.keras. Check the path (a SavedModel "
                "folder's URI ends with '/')."
            ]
        },
    }
    spec["dataset"]["test"] = f"file://{inputs}/train/"
    spec["compare_with"] = {"model_uri": f"file://{inputs}/model.keras"}
    assert local_app.test_client().post("/v1/jobs", json=spec).status_code == 201


def test_a_repeated_idempotency_key_gets_its_job_even_where_an_input_is_gone(
    local_app: Flask, inputs: Path
) -> None:
    client: FlaskClient = local_app.test_client()
    spec = _spec(f"file://{inputs / 'model.keras'}", f"file://{inputs}/train/")
    headers = {"Idempotency-Key": "ci-run-1"}
    first = client.post("/v1/jobs", json=spec, headers=headers)
    assert first.status_code == 201
    (inputs / "model.keras").unlink()
    again = client.post("/v1/jobs", json=spec, headers=headers)
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    other = _spec(f"file://{inputs / 'other.keras'}", f"file://{inputs}/train/")
    _errors(client.post("/v1/jobs", json=other, headers={"Idempotency-Key": "ci-run-2"}))


def test_root_of_the_disk_is_answered_without_walking_it(local_app: Flask) -> None:
    # file:/// and a glob at the root: the check stops at the first file, or gives up.
    spec = _spec("file:///", "file:///*.no-such-suffix-anywhere")
    response = local_app.test_client().post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.get_json()


def test_on_s3_a_missing_key_or_bucket_is_422(
    tmp_path: Path, s3_env: dict[str, str], s3_client: S3Client, bucket: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="models/base.keras", Body=b"x")
    s3_client.put_object(Bucket=bucket, Key="data/train/cat/1.png", Body=b"x")
    app = create_app(Config(state_uri=f"s3://{bucket}/state", work_dir=tmp_path / "work"))
    client = app.test_client()
    out = {"uri": f"s3://{bucket}/out/"}
    stored = _spec(f"s3://{bucket}/models/base.keras", f"s3://{bucket}/data/train/", output=out)
    assert client.post("/v1/jobs", json=stored).status_code == 201
    wrong_key = _spec(f"s3://{bucket}/models/bse.keras", f"s3://{bucket}/data/train/", output=out)
    assert "no file at" in _errors(client.post("/v1/jobs", json=wrong_key))["base_model"]["uri"][0]
    no_bucket = _spec(f"s3://{bucket}/models/base.keras", "s3://no-such-bucket-x/t/", output=out)
    message = _errors(client.post("/v1/jobs", json=no_bucket))["dataset"]["train"][0]
    assert "no-such-bucket-x" in message and "does not exist" in message


@pytest.mark.slow
def test_under_gunicorn(tmp_path: Path, inputs: Path) -> None:
    port = free_port()
    api = gunicorn_api(port, {"FINETUNE_STATE_URI": f"file://{tmp_path / 'state'}"}, tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/v1/jobs"
        missing = _spec(f"file://{inputs}/missing.keras", f"file://{inputs}/train/")
        answer = requests.post(url, json=missing, timeout=10)
        assert answer.status_code == 422, answer.text
        assert "no file at" in answer.json()["errors"]["json"]["base_model"]["uri"][0]
        stored = _spec(f"file://{inputs}/model.keras", f"file://{inputs}/train/")
        assert requests.post(url, json=stored, timeout=10).status_code == 201
    finally:
        api.stop()


def test_a_found_input_is_remembered_for_a_while_and_a_missing_one_never(inputs: Path) -> None:
    now = [0.0]
    checks = InputChecks(Storage(make_s3_client, allow_local=True), 60, clock=lambda: now[0])
    found = JobPlan.from_spec(
        JobSpecSchema().load(_spec(f"file://{inputs}/model.keras", f"file://{inputs}/train/"))
    )
    assert checks.missing(found) == {}
    (inputs / "model.keras").unlink()
    now[0] = 59.0
    assert checks.missing(found) == {}, "remembered: no storage call"
    now[0] = 61.0
    assert "uri" in checks.missing(found)["base_model"], "looked up again"
    (inputs / "model.keras").write_bytes(b"x")
    assert checks.missing(found) == {}, "a missing input is looked up every time"
