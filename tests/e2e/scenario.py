"""The end-to-end fine-tuning scenario shared by the S3 and the embedded-default tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers.data import digit_images, write_image_folder
from tests.helpers.models import pretrain_tiny_cnn

#: The base model is pretrained on digits 5-9; the job fine-tunes it to tell 0-3 apart.
FINE_TUNE_DIGITS = (0, 1, 2, 3)
CLASSES = ("digit0", "digit1", "digit2", "digit3")  # sorted = label order


@dataclass(frozen=True)
class Scenario:
    """Local files of the scenario, before they are put into storage."""

    base_model: Path
    train_dir: Path
    held_out_images: np.ndarray
    held_out_labels: np.ndarray


def prepare(root: Path) -> Scenario:
    """A pretrained tiny CNN, a training image folder, and held-out images of other seeds."""
    base = pretrain_tiny_cnn(root / "base" / "model.keras", epochs=6)
    del base
    train = write_image_folder(
        root / "train", CLASSES, per_class=60, seed=1, digits=FINE_TUNE_DIGITS
    )
    images, labels = digit_images(FINE_TUNE_DIGITS, per_class=30, seed=99)
    return Scenario(root / "base" / "model.keras", train, images, labels)


def job_spec(base_uri: str, train_uri: str, output_uri: str) -> dict[str, Any]:
    """Replace the head for 4 classes, freeze the first conv block, train briefly."""
    return {
        "name": "digits-refresh",
        "labels": {"team": "vision", "ci_run": "e2e"},
        "base_model": {"uri": base_uri},
        "dataset": {"train": train_uri, "validation_split": 0.2, "preprocessing": "rescale"},
        "head": {"cut_at": "gap", "hidden_units": [32], "dropout": 0.1},
        "freeze": {"first_n": 5},
        "training": {"epochs": 10, "batch_size": 32, "learning_rate": 0.003, "seed": 1},
        "output": {"uri": output_uri},
    }


def held_out_accuracy(saved_model_dir: Path, scenario: Scenario) -> float:
    """Accuracy of the exported SavedModel on held-out raw-pixel images."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    serve = loaded.signatures["serving_default"]
    outputs = serve(image=tf.constant(scenario.held_out_images.astype(np.float32)))
    (probabilities,) = outputs.values()
    predicted = np.argmax(probabilities.numpy(), axis=1)
    return float(np.mean(predicted == scenario.held_out_labels))


def assert_succeeded_job(job: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """What every succeeded job shows a client."""
    assert job["status"] == "succeeded", job.get("error")
    assert job["attempt"] == 1
    assert job["progress"]["phase"] == "done" and job["progress"]["percent"] == 100.0
    assert job["result"]["class_names"] == sorted(CLASSES)
    assert job["result"]["metrics"]["val_accuracy"] >= 0.0
    assert len(job["result"]["history"]) == 10
    types = [event["type"] for event in events]
    for expected in ("created", "claimed", "phase", "epoch", "published", "succeeded"):
        assert expected in types, types
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
