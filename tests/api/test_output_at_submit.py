"""POST /v1/jobs refuses an output.uri that holds a published model (422 on output.uri) unless
output.overwrite is true; on local storage and on a real S3 server (moto over HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from service.app import create_app
from service.config import Config
from tests.conftest import S3Client


def _spec(root: str, out: str, **output: Any) -> dict[str, Any]:
    return {
        "base_model": {"uri": f"{root}model.keras"},
        "dataset": {"train": f"{root}train/"},
        "output": {"uri": out, **output},
    }


def _output_error(response: Any) -> str:
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]["json"]
    assert list(errors) == ["output"] and list(errors["output"]) == ["uri"], errors
    message: str = errors["output"]["uri"][0]
    return message


def test_a_published_model_is_422_unless_overwrite(local_app: Flask, tmp_path: Path) -> None:
    root = tmp_path / "in"
    for name in ("model.keras", "train/cat/1.png", "v1/manifest.json", "v2/notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    client = local_app.test_client()
    taken = _spec(f"file://{root}/", f"file://{root}/v1/")

    message = _output_error(client.post("/v1/jobs", json=taken))
    assert "already holds a published model (manifest.json)" in message
    assert "output.overwrite" in message
    assert client.get("/v1/jobs").get_json()["jobs"] == []
    replacing = _spec(f"file://{root}/", f"file://{root}/v1/", overwrite=True)
    assert client.post("/v1/jobs", json=replacing).status_code == 201
    other_files = _spec(f"file://{root}/", f"file://{root}/v2/")  # no model there
    assert client.post("/v1/jobs", json=other_files).status_code == 201


def test_overwrite_must_be_a_boolean(local_app: Flask, tmp_path: Path) -> None:
    spec = _spec(f"file://{tmp_path}/", f"file://{tmp_path}/out/", overwrite="yes please")
    response = local_app.test_client().post("/v1/jobs", json=spec)
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"]["output"]["overwrite"]


def test_on_s3_a_saved_model_folder_is_a_published_model(
    tmp_path: Path, s3_env: dict[str, str], s3_client: S3Client, bucket: str
) -> None:
    for key in ("model.keras", "train/cat/1.png", "v1/saved_model/saved_model.pb"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    app = create_app(Config(state_uri=f"s3://{bucket}/state", work_dir=tmp_path / "work"))
    client = app.test_client()
    root = f"s3://{bucket}/"

    message = _output_error(client.post("/v1/jobs", json=_spec(root, f"{root}v1/")))
    assert "(saved_model/)" in message
    assert client.post("/v1/jobs", json=_spec(root, f"{root}v2/")).status_code == 201
    assert (
        client.post("/v1/jobs", json=_spec(root, f"{root}v1/", overwrite=True)).status_code == 201
    )
