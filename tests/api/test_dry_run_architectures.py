"""POST /v1/jobs/validate with base_model.architecture: the report names the architecture, the
weights file's digest and what was loaded; a weights file that does not fit is a field error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Config
from service.context import build_services
from tests.helpers.architectures import build, perturb, write_published_h5
from tests.helpers.data import write_image_folder
from tests.helpers.services import running_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MobileNetV2 (alpha 0.35) weights, without and with the top, and digits 0-2."""
    root = tmp_path_factory.mktemp("dry-run-architectures")
    model = build("MobileNetV2", alpha=0.35)
    perturb(model, seed=4)
    write_published_h5(model, root / "v2_no_top.h5")
    write_published_h5(build("MobileNetV2", alpha=0.35, include_top=True), root / "v2_top.h5")
    write_image_folder(root / "train", ["a", "b", "c"], per_class=6, digits=[0, 1, 2])
    return {"no_top": root / "v2_no_top.h5", "top": root / "v2_top.h5", "train": root / "train"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    """The real app and a worker on local storage (file:// URIs allowed), 3 images per class."""
    root = tmp_path_factory.mktemp("dry-run-architectures-service")
    config = Config(
        state_uri=f"file://{root / 'state'}",
        work_dir=root / "work",
        allow_local_storage=True,
        dry_run_samples_per_class=3,
        poll_seconds=0.1,
    )
    app: Flask = create_app(config)
    with running_worker(build_services(config)):
        yield app.test_client()


def _spec(inputs: dict[str, Path], weights: Path) -> dict[str, Any]:
    return {
        "base_model": {
            "architecture": "MobileNetV2",
            "weights_uri": f"file://{weights}",
            "options": {"alpha": 0.35},
        },
        "dataset": {"train": f"file://{inputs['train']}/", "image_size": [32, 32]},
        "head": {},
        "schedule": [
            {"epochs": 1, "freeze": "base"},
            {"epochs": 1, "freeze": {"until": "block_13_expand"}},
        ],
        "output": {"uri": "file:///tmp/never-written/"},
    }


def test_report_names_architecture_digest_and_what_was_loaded(
    client: FlaskClient, inputs: dict[str, Path]
) -> None:
    import hashlib

    response = client.post("/v1/jobs/validate", json=_spec(inputs, inputs["no_top"]))

    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    named = report["model"]["architecture"]
    assert named["built"] == "MobileNetV2(alpha=0.35, include_top=False)"
    assert named["weights_sha256"] == hashlib.sha256(inputs["no_top"].read_bytes()).hexdigest()
    assert (named["layers_loaded"], named["weights_loaded"]) == (104, 260)
    assert report["model"]["format"] == "weights_legacy"
    assert report["preprocessing"] == "mobilenet_v2"  # auto: the family's own
    assert report["phases"][1]["frozen_layers"][-1] == "block_13_expand"


def test_with_top_file_for_no_top_build_is_a_weights_uri_error(
    client: FlaskClient, inputs: dict[str, Path]
) -> None:
    response = client.post("/v1/jobs/validate", json=_spec(inputs, inputs["top"]))

    assert response.status_code == 422, response.get_json()
    (message,) = response.get_json()["errors"]["json"]["base_model"]["weights_uri"]
    assert "MobileNetV2(alpha=0.35, include_top=False)" in message
    assert "v2_top.h5" in message and "'predictions'" in message
