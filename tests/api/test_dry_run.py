"""POST /v1/jobs/validate: the dry run, through the app and a worker on local storage.

The test process plays the API (Flask's test client) and runs a real Worker in a thread on the
same job state: the worker takes each dry run, stages a sample and inspects it in a trainer
child (which loads TensorFlow), as in production.
"""

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
from tests.helpers.data import write_image_folder
from tests.helpers.legacy_models import keras3_lambda_model
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import running_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny CNN (32x32 input, layers conv1..gap) and digits 0-2, 12 images per class."""
    root = tmp_path_factory.mktemp("dry-run-inputs")
    pretrain_tiny_cnn(root / "model.keras", per_class=10, epochs=1)
    write_image_folder(root / "train", ["a", "b", "c"], per_class=12, digits=[0, 1, 2])
    return {"model": root / "model.keras", "train": root / "train", "root": root}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Local storage (file:// URIs allowed), 3 images per class sampled."""
    root = tmp_path_factory.mktemp("dry-run-service")
    return Config(
        state_uri=f"file://{root / 'state'}",
        work_dir=root / "work",
        allow_local_storage=True,
        dry_run_samples_per_class=3,
        poll_seconds=0.1,
    )


@pytest.fixture(scope="module")
def client(config: Config) -> Iterator[FlaskClient]:
    """The real app, and a worker on the same job state for the module (its warm child too)."""
    app: Flask = create_app(config)
    with running_worker(build_services(config)):
        yield app.test_client()


def _spec(inputs: dict[str, Path], **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "base_model": {"uri": f"file://{inputs['model']}"},
        "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
        "head": {"cut_at": "gap", "hidden_units": [8]},
        "freeze": "base",
        "output": {"uri": "file:///tmp/never-written/"},
    }
    spec.update(overrides)
    return spec


def _errors(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.get_json()
    errors: dict[str, Any] = response.get_json()["errors"]["json"]
    return errors


def test_good_spec_gets_the_report_and_queues_nothing(
    client: FlaskClient, inputs: dict[str, Path], config: Config
) -> None:
    spec = _spec(
        inputs,
        schedule=[
            {"epochs": 1, "freeze": "base"},
            {"epochs": 1, "learning_rate": 1e-5, "freeze": {"until": "relu2"}},
        ],
    )

    response = client.post("/v1/jobs/validate", json=spec)

    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert report["valid"] is True
    assert report["model"]["input_shape"] == [None, 32, 32, 3]
    assert report["model"]["input_pixels"] == 32 * 32
    assert report["model"]["limits"] == {
        "max_input_pixels": config.max_input_pixels,
        "max_params": config.max_model_params,
    }
    assert 0 < report["model"]["params"] < config.max_model_params
    assert [layer["name"] for layer in report["model"]["layers"]][:3] == ["input", "conv1", "bn1"]
    assert report["image_shape"] == [32, 32, 3]
    assert report["data"]["train"]["class_names"] == ["a", "b", "c"]
    assert report["data"]["train"]["counts_in_sample"] == {"a": 3, "b": 3, "c": 3}
    assert report["data"]["train"]["image_shapes"] == [[32, 32, 3]]
    assert report["head"]["cut_layer"] == "gap" and report["output_units"] == 3
    first, second = report["phases"]
    assert len(first["frozen_layers"]) == 14 and first["trainable_weights"] == 4  # the head
    assert second["frozen_layers"][-1] == "relu2"
    # bn3 was frozen by the first phase and stays frozen when its neighbours thaw.
    assert second["frozen_batch_norms"] == ["bn1", "bn2", "bn3"]
    assert second["trainable_weights"] > first["trainable_weights"]
    assert client.get("/v1/jobs").get_json()["jobs"] == []
    assert not list((config.work_dir / "dry-runs").iterdir())  # the sample was removed
    state = Path(config.state_uri.removeprefix("file://"))
    handed = [p for p in state.rglob("*") if p.relative_to(state).parts[0].startswith("dry-run")]
    assert [p for p in handed if p.is_file()] == []  # the request and result were removed


def test_every_incompatibility_is_a_field_error(
    client: FlaskClient, inputs: dict[str, Path]
) -> None:
    spec = _spec(
        inputs,
        dataset={
            "train": f"file://{inputs['train']}/",
            "preprocessing": "rescale",
            "image_size": [64, 64],
        },
        head={"cut_at": "gap", "num_classes": 5},
        training={"class_weight": {"zebra": 2.0}},
        schedule=[
            {"epochs": 1, "freeze": "base"},
            {"epochs": 1, "freeze": {"until": "block_13_expand"}},
        ],
    )

    errors = _errors(client.post("/v1/jobs/validate", json=spec))

    assert "the model takes 32x32" in errors["dataset"]["image_size"][0]
    assert "head.num_classes is 5 but the data has 3 classes" in errors["head"]["num_classes"][0]
    assert "'zebra'" in errors["training"]["class_weight"][0]
    assert "no layer named 'block_13_expand'" in errors["schedule"]["1"]["freeze"]["until"][0]
    assert set(errors) == {"dataset", "head", "training", "schedule"}


def test_submit_with_validate_runs_the_dry_run_first(
    client: FlaskClient, inputs: dict[str, Path]
) -> None:
    """POST /v1/jobs?validate=true: a spec the dry run refuses queues nothing; one it passes
    is queued as usual (201); the argument takes only true and false."""
    misfit = _spec(inputs, head={"cut_at": "gap", "num_classes": 5})
    before = len(client.get("/v1/jobs").get_json()["jobs"])

    refused = client.post("/v1/jobs?validate=true", json=misfit)
    unchecked = client.post("/v1/jobs?validate=yes", json=misfit)

    assert "data has 3 classes" in _errors(refused)["head"]["num_classes"][0]
    assert unchecked.status_code == 422 and "validate" in unchecked.get_json()["errors"]["query"]
    assert len(client.get("/v1/jobs").get_json()["jobs"]) == before
    queued = client.post("/v1/jobs?validate=true", json=_spec(inputs))
    assert queued.status_code == 201, queued.get_json()
    assert queued.get_json()["status"] in ("queued", "running")
    assert client.post(f"/v1/jobs/{queued.get_json()['id']}/cancel").status_code == 202


def test_a_layer_that_is_not_there(client: FlaskClient, inputs: dict[str, Path]) -> None:
    spec = _spec(inputs, head={"cut_at": "conv_3"})

    errors = _errors(client.post("/v1/jobs/validate", json=spec))

    assert "no layer named 'conv_3'" in errors["head"]["cut_at"][0]
    assert "Similar names: 'conv3'" in errors["head"]["cut_at"][0]


def test_unsafe_model_is_a_base_model_error_and_runs_nothing(
    client: FlaskClient, inputs: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    evil = keras3_lambda_model(tmp_path / "evil.keras", marker)

    errors = _errors(
        client.post("/v1/jobs/validate", json=_spec(inputs, base_model={"uri": f"file://{evil}"}))
    )

    assert "Lambda layer" in errors["base_model"]["uri"][0]
    assert not marker.exists()


def test_planting_saved_model_is_reported_rebuilt_and_runs_nothing(
    client: FlaskClient, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The dry run's child opens the folder as data: its resource initializer never runs."""
    from tests.helpers.legacy_models import tf_keras_planting_saved_model

    marker = tmp_path / "planted.txt"
    folder = tf_keras_planting_saved_model(tmp_path / "saved_model", marker)

    response = client.post(
        "/v1/jobs/validate", json=_spec(inputs, base_model={"uri": f"file://{folder}/"})
    )

    assert response.status_code == 200, response.get_json()
    model = response.get_json()["model"]
    assert model["format"] == "saved_model" and model["reader"] == "keras"
    assert "planting (added to the model)" in model["ignored"] and "1 resources" in model["ignored"]
    assert not marker.exists() and not Path(f"{marker}.fn").exists()


@pytest.mark.parametrize("craft", ["deeply_nested", "huge_input"])
def test_models_over_the_caps_are_base_model_errors(
    craft: str, client: FlaskClient, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """A config nested 100,000 deep (was a 500) and a 200,000 x 200,000 input (was accepted)."""
    from tests.helpers import legacy_models

    path = getattr(legacy_models, craft)(inputs["model"], tmp_path / f"{craft}.keras")

    errors = _errors(
        client.post("/v1/jobs/validate", json=_spec(inputs, base_model={"uri": f"file://{path}"}))
    )

    expected = "nests more than" if craft == "deeply_nested" else "FINETUNE_MAX_INPUT_PIXELS"
    assert expected in errors["base_model"]["uri"][0], errors


def test_missing_data_and_model_are_field_errors(
    client: FlaskClient, inputs: dict[str, Path]
) -> None:
    missing_data = _spec(inputs, dataset={"train": f"file://{inputs['root']}/nothing/"})
    missing_model = _spec(inputs, base_model={"uri": f"file://{inputs['root']}/nothing.keras"})

    assert (
        "no files under"
        in _errors(client.post("/v1/jobs/validate", json=missing_data))["dataset"]["train"][0]
    )
    assert (
        "no model file"
        in _errors(client.post("/v1/jobs/validate", json=missing_model))["base_model"]["uri"][0]
    )


def test_a_folder_that_is_not_a_saved_model_is_refused_before_any_download(
    client: FlaskClient, inputs: dict[str, Path]
) -> None:
    """A prefix without saved_model.pb is refused at once, the filesystem's root included
    (listing / would read /proc: it once gave a 500 after ten seconds)."""
    for uri in ("file:///", f"file://{inputs['train']}/"):
        message = _errors(
            client.post("/v1/jobs/validate", json=_spec(inputs, base_model={"uri": uri}))
        )
        assert "holds no saved_model.pb" in message["base_model"]["uri"][0], message


def test_spec_errors_come_first_without_touching_storage(client: FlaskClient) -> None:
    response = client.post(
        "/v1/jobs/validate",
        json={"base_model": {"uri": "http://x"}, "dataset": {"train": "s3://d/"}, "output": {}},
    )

    errors = _errors(response)
    assert set(errors) == {"base_model", "output"}


def test_archive_and_npz_are_sampled_and_described(
    client: FlaskClient, inputs: dict[str, Path]
) -> None:
    from tests.helpers.data import write_archive, write_npz

    archive = write_archive(inputs["train"], inputs["root"] / "train.zip", wrap="train")
    validation = write_npz(
        inputs["root"] / "val.npz", [0, 1, 2], per_class=4, class_names=["a", "b", "c"]
    )
    spec = _spec(
        inputs,
        dataset={
            "train": f"file://{archive}",
            "validation": f"file://{validation}",
            "preprocessing": "rescale",
        },
    )

    response = client.post("/v1/jobs/validate", json=spec)

    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["train"]["format"] == "image_folder"
    assert data["train"]["counts_in_sample"] == {"a": 3, "b": 3, "c": 3}
    assert data["validation"]["format"] == "npz"
    assert data["validation"]["class_names"] == ["a", "b", "c"]
    assert data["validation"]["image_shapes"] == [[32, 32, 3]]
