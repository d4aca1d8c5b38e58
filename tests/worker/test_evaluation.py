"""The final evaluation, the test split and the comparison with a champion: real worker, real
tiny Keras models, local storage, 32x32 images of 2 classes, 1 epoch.

The evaluation's numbers are checked against scikit-learn's metrics computed on the exported
SavedModel's predictions of the test images (read here with Pillow, not the service's
pipeline), never against the service's own figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from schemas import JobSpecSchema
from service.context import Services
from service.jobs import JobRecord, JobStatus
from service.worker import Worker
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import local_services

sklearn_metrics = pytest.importorskip("sklearn.metrics")

pytestmark = pytest.mark.slow

CLASSES = ["a", "b"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    pretrain_tiny_cnn(root / "model.keras", epochs=2, per_class=20)
    write_image_folder(root / "train", CLASSES, per_class=12, digits=[0, 1])
    write_image_folder(root / "test1", CLASSES, per_class=7, digits=[0, 1], seed=11)
    # Other images (other seed, other count) of the same classes.
    write_image_folder(root / "test2", CLASSES, per_class=5, digits=[1, 0], seed=12)
    return {
        "model": root / "model.keras",
        "train": root / "train",
        "test1": root / "test1",
        "test2": root / "test2",
    }


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    return local_services(tmp_path_factory.mktemp("svc"), heartbeat_seconds=0.5)


def _spec(inputs: dict[str, Path], out: Path, test: str | None, **extra: Any) -> dict[str, Any]:
    dataset: dict[str, Any] = {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"}
    if test is not None:
        dataset["test"] = f"file://{inputs[test]}/"
    spec: dict[str, Any] = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{inputs['model']}"},
            "dataset": dataset,
            "head": {"cut_at": "gap"},
            "freeze": "base",
            "training": {"epochs": 1, "seed": 3, "batch_size": 8},
            "output": {"uri": f"file://{out}/"},
            **extra,
        }
    )
    return spec


def _run(services: Services, spec: dict[str, Any]) -> JobRecord:
    created = services.jobs.create(spec)
    assert Worker(services).run_once()
    return services.jobs.get(created.id)


@pytest.fixture(scope="module")
def first(
    services: Services, inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[JobRecord, Path]:
    out = tmp_path_factory.mktemp("v1")
    record = _run(services, _spec(inputs, out, "test1"))
    assert record.status is JobStatus.SUCCEEDED, record.error
    return record, out


def _saved_model_scores(saved_model: Path, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, class scores) of the SavedModel's serving signature on ``folder``."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / name).iterdir()):
            images.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32))
            labels.append(label)
    outputs = serve(image=tf.constant(np.stack(images)))
    scores = next(iter(outputs.values())).numpy()
    return np.asarray(labels), scores


def test_the_evaluation_agrees_with_sklearn_on_the_saved_models_predictions(
    first: tuple[JobRecord, Path], inputs: dict[str, Path]
) -> None:
    record, out = first
    assert record.result is not None
    evaluation = record.result["evaluation"]
    labels, scores = _saved_model_scores(out / "saved_model", inputs["test1"])
    predicted = scores.argmax(axis=1)

    assert evaluation["split"] == "test"
    assert evaluation["examples"] == len(labels) == 14
    assert evaluation["class_names"] == CLASSES
    metrics = evaluation["metrics"]
    assert metrics["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(labels, predicted))
    assert metrics["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(labels, predicted, average="macro", zero_division=0)
    )
    assert metrics["loss"] == pytest.approx(
        sklearn_metrics.log_loss(labels, scores, labels=[0, 1]), abs=1e-4
    )
    # Two classes: k is 1 (sklearn takes the positive class's scores then).
    assert metrics["top_k_accuracy"] == pytest.approx(
        sklearn_metrics.top_k_accuracy_score(labels, scores[:, 1], k=1)
    )
    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        labels, predicted, labels=[0, 1], zero_division=0
    )
    for index, name in enumerate(CLASSES):
        figures = evaluation["per_class"][name]
        assert figures["precision"] == pytest.approx(precision[index])
        assert figures["recall"] == pytest.approx(recall[index])
        assert figures["f1"] == pytest.approx(f1[index])
        assert figures["support"] == support[index]
    assert evaluation["confusion_matrix"] == (
        sklearn_metrics.confusion_matrix(labels, predicted, labels=[0, 1]).tolist()
    )


def test_evaluation_json_and_the_confusion_matrix_are_published_and_in_the_manifest(
    first: tuple[JobRecord, Path],
) -> None:
    record, out = first
    assert record.result is not None
    stored = json.loads((out / "evaluation.json").read_text())
    assert stored["evaluation"] == record.result["evaluation"]
    assert stored["comparison"] is None
    with Image.open(out / "confusion_matrix.png") as picture:
        assert picture.format == "PNG" and picture.size[0] >= 300
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["evaluation_uri"] == f"file://{out}/evaluation.json"
    assert manifest["outputs"]["confusion_matrix_uri"] == f"file://{out}/confusion_matrix.png"
    assert record.result["confusion_matrix_uri"] == manifest["outputs"]["confusion_matrix_uri"]
    assert manifest["evaluation"] == record.result["evaluation"]
    assert manifest["inputs"]["dataset"]["dataset.test"]["uri"].endswith("/test1/")


def test_the_test_split_never_reaches_training(
    services: Services,
    inputs: dict[str, Path],
    first: tuple[JobRecord, Path],
    tmp_path: Path,
) -> None:
    """The same seed and training data with other test images: training is the same."""
    record, _ = first
    other = _run(services, _spec(inputs, tmp_path / "v1b", "test2"))
    assert other.status is JobStatus.SUCCEEDED, other.error
    assert record.result is not None and other.result is not None

    assert other.result["history"] == record.result["history"]
    assert other.result["metrics"] == record.result["metrics"]
    assert other.result["evaluation"]["examples"] == 10
    assert record.result["evaluation"]["examples"] == 14


def test_without_a_test_set_the_evaluation_runs_on_validation(
    services: Services, inputs: dict[str, Path], tmp_path: Path
) -> None:
    record = _run(services, _spec(inputs, tmp_path / "v0", None))
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.result is not None
    evaluation = record.result["evaluation"]
    assert evaluation["split"] == "validation"
    # 20 % of 12 images per class held out.
    assert sum(f["support"] for f in evaluation["per_class"].values()) == evaluation["examples"]
    assert 2 <= evaluation["examples"] <= 6


def _nothing_published(out: Path) -> bool:
    return not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_a_champion_compared_by_model_uri_fails_min_delta_and_publishes_nothing(
    services: Services, inputs: dict[str, Path], first: tuple[JobRecord, Path], tmp_path: Path
) -> None:
    record, v1 = first
    assert record.result is not None
    out = tmp_path / "v2"
    spec = _spec(
        inputs,
        out,
        "test1",
        compare_with={"model_uri": f"file://{v1}/model.keras"},
        gate={"metric": "test_accuracy", "min_delta": 0.5},
    )
    failed = _run(services, spec)

    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error["code"] == "gate_failed"
    champion = record.result["evaluation"]["metrics"]["accuracy"]
    message = failed.error["message"]
    assert "test_accuracy" in message and f"{champion:.4f}" in message
    assert "min_delta 0.5" in message
    assert _nothing_published(out)
    # What missed stays on the record, for a CI report.
    assert failed.error["evaluation"]["split"] == "test"
    assert failed.error["comparison"]["metrics"]["accuracy"] == pytest.approx(champion, abs=1e-5)


def test_a_champion_named_by_an_alias_is_scored_like_its_own_evaluation(
    services: Services, inputs: dict[str, Path], first: tuple[JobRecord, Path], tmp_path: Path
) -> None:
    """The champion is the first job's model, scored on the same test images: its figures in
    the comparison are the first job's own evaluation, and the deltas new minus those."""
    record, _ = first
    assert record.result is not None
    alias = tmp_path / "production.json"
    target = {
        "job_id": record.id,
        **{name: record.result[name] for name in ("keras_uri", "saved_model_uri", "manifest_uri")},
    }
    alias.write_text(json.dumps({"target": target, "version": 1, "history": []}))
    spec = _spec(
        inputs,
        tmp_path / "v3",
        "test1",
        training={"epochs": 1, "seed": 4, "batch_size": 8},
        compare_with={"alias_uri": f"file://{alias}"},
        gate={"metric": "test_accuracy", "min_delta": -1.0, "max_class_drop": 1.0},
    )
    done = _run(services, spec)

    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None
    comparison, evaluation = done.result["comparison"], done.result["evaluation"]
    champion = record.result["evaluation"]
    assert comparison["model_uri"] == record.result["keras_uri"]
    for name, value in champion["metrics"].items():
        assert comparison["metrics"][name] == pytest.approx(value, abs=1e-5)
        assert comparison["delta"][name] == pytest.approx(
            evaluation["metrics"][name] - value, abs=1e-5
        )
    assert comparison["per_class"].keys() == champion["per_class"].keys()
    stored = json.loads((tmp_path / "v3" / "evaluation.json").read_text())
    assert stored["comparison"] == comparison


def test_a_champion_of_other_classes_is_incompatible(
    services: Services, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The base model (5 digit classes, no manifest) cannot be compared with a 2-class model."""
    spec = _spec(
        inputs, tmp_path / "v4", "test1", compare_with={"model_uri": f"file://{inputs['model']}"}
    )
    failed = _run(services, spec)

    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error["code"] == "incompatible"
    assert "compare_with" in failed.error["message"] and "5 output units" in failed.error["message"]
