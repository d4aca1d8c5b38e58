"""The worker in-process on local storage; the trainer still runs in a spawned child."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas import JobSpecSchema
from service.context import Services
from service.jobs import JobRecord, JobStatus
from service.worker import Worker
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import local_services


@pytest.fixture
def services(tmp_path: Path) -> Services:
    """Job state and scratch in temporary folders; specs may name file:// URIs."""
    return local_services(tmp_path, heartbeat_seconds=0.5)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pretrained model and a small image folder, made once for the module."""
    root = tmp_path_factory.mktemp("inputs")
    pretrain_tiny_cnn(root / "model.keras", epochs=3, per_class=40)
    write_image_folder(root / "train", ["a", "b", "c"], per_class=20, digits=[0, 1, 2])
    return {"model": root / "model.keras", "train": root / "train"}


def _spec(model: Path, train: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    raw = {
        "base_model": {"uri": f"file://{model}"},
        "dataset": {"train": f"file://{train}/", "preprocessing": "rescale"},
        "head": {"cut_at": "gap"},
        "freeze": "base",
        "training": {"epochs": 2, "learning_rate": 0.01, "seed": 3},
        "output": {"uri": f"file://{out}/"},
        **overrides,
    }
    spec: dict[str, Any] = JobSpecSchema().load(raw)
    return spec


def _run(services: Services, spec: dict[str, Any]) -> JobRecord:
    created = services.jobs.create(spec)
    assert Worker(services).run_once()
    return services.jobs.get(created.id)


def test_missing_base_model_fails_with_invalid_model(
    services: Services, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    record = _run(services, _spec(tmp_path / "nope.keras", inputs["train"], tmp_path / "out"))
    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "invalid_model"
    assert "base_model.uri" in record.error["message"]
    assert "Traceback" not in record.error["message"]


def test_corrupt_model_file_fails_with_invalid_model(
    services: Services, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 this is not really a keras archive")
    record = _run(services, _spec(broken, inputs["train"], tmp_path / "out"))
    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "invalid_model"
    assert not (tmp_path / "out").exists()


def test_empty_dataset_fails_with_invalid_dataset(
    services: Services, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    record = _run(services, _spec(inputs["model"], empty, tmp_path / "out"))
    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "invalid_dataset"
    assert "dataset.train" in record.error["message"]


def test_layer_that_is_not_there_fails_with_incompatible(
    services: Services, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    record = _run(
        services,
        _spec(inputs["model"], inputs["train"], tmp_path / "out", head={"cut_at": "no_such_layer"}),
    )
    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "incompatible"
    assert "no_such_layer" in record.error["message"]


def test_gate_missed_fails_and_writes_nothing(
    services: Services, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    out = tmp_path / "out"
    record = _run(
        services,
        _spec(inputs["model"], inputs["train"], out, gate={"metric": "accuracy", "min": 1.01}),
    )
    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "gate_failed"
    assert "below the gate" in record.error["message"]
    assert not out.exists()
    assert record.metrics  # the metrics that missed the gate are shown


def test_succeeded_job_records_progress_and_result(
    services: Services, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    out = tmp_path / "out"
    record = _run(services, _spec(inputs["model"], inputs["train"], out))
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.result and record.result["keras_uri"] == f"file://{out}/model.keras"
    assert (out / "manifest.json").is_file() and (out / "saved_model" / "saved_model.pb").is_file()
    assert record.progress["epoch"] == 2 and record.progress["epochs"] == 2
    assert record.lease is None and record.finished_at
    epochs = [e for e in services.jobs.read_events(record.id) if e.type == "epoch"]
    assert [e.data["epoch"] for e in epochs] == [1, 2]
    assert not (services.config.work_dir / record.id).exists()  # scratch cleaned


def test_planting_saved_model_trains_from_the_rebuilt_model_and_writes_nothing(
    services: Services, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    """A Keras 2 SavedModel whose resource initializer writes a file, through a real job."""
    from tests.helpers.legacy_models import tf_keras_planting_saved_model

    marker = tmp_path / "planted.txt"
    folder = tf_keras_planting_saved_model(tmp_path / "models" / "saved_model", marker)
    out = tmp_path / "out"

    spec = _spec(folder, inputs["train"], out)
    spec["base_model"]["uri"] += "/"  # a folder's URI ends with '/'
    record = _run(services, spec)

    assert record.status is JobStatus.SUCCEEDED, record.error
    assert not marker.exists() and not Path(f"{marker}.fn").exists()
    assert (out / "model.keras").is_file()
    ignored = [e for e in services.jobs.read_events(record.id) if "ignored" in e.data]
    assert len(ignored) == 1, [e.message for e in services.jobs.read_events(record.id)]
    assert "never run" in ignored[0].message and "planting (added" in ignored[0].message
    assert "1 resources" in ignored[0].data["ignored"]


@pytest.mark.parametrize("craft", ["deeply_nested", "huge_input", "too_many_params"])
def test_models_over_the_caps_fail_invalid_model_at_once(
    craft: str, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    """Refused before the model is built: one attempt, invalid_model (not internal, no retries)."""
    from tests.helpers import legacy_models

    model = inputs["model"]
    if craft != "too_many_params":
        model = getattr(legacy_models, craft)(model, tmp_path / f"{craft}.keras")
    services = local_services(
        tmp_path, max_model_params=1000 if craft == "too_many_params" else 10**9
    )

    record = _run(services, _spec(model, inputs["train"], tmp_path / "out"))

    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "invalid_model", record.error
    says = {
        "deeply_nested": "nests more than",
        "huge_input": "FINETUNE_MAX_INPUT_PIXELS",
        "too_many_params": "FINETUNE_MAX_MODEL_PARAMS",
    }[craft]
    assert says in record.error["message"]
    assert record.attempt == 1
