"""A job with the recipe's knobs, run by the worker: its manifest records per phase what Keras
trained with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import JobSpecSchema
from service.jobs import JobStatus
from service.worker import Worker
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import local_services

pytestmark = pytest.mark.slow


def test_the_manifest_records_each_phases_effective_settings(tmp_path: Path) -> None:
    services = local_services(tmp_path, heartbeat_seconds=0.5)
    pretrain_tiny_cnn(tmp_path / "model.keras", epochs=2, per_class=30)
    train = write_image_folder(tmp_path / "train", ["a", "b"], per_class=16, digits=[0, 1])
    out = tmp_path / "out"
    spec = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{tmp_path / 'model.keras'}"},
            "dataset": {
                "train": f"file://{train}/",
                "preprocessing": "rescale",
                "validation_split": 0,
            },
            "head": {"cut_at": "gap", "l2": 0.01},
            "freeze": "base",
            "training": {
                "batch_size": 8,
                "optimizer": "adamw",
                "learning_rate": 0.01,
                "clipnorm": 0.5,
                "label_smoothing": 0.05,
                "early_stopping": {"monitor": "loss", "min_delta": 0.001},
                "seed": 5,
            },
            "schedule": [
                {
                    "epochs": 2,
                    "lr_schedule": {
                        "type": "cosine",
                        "warmup_epochs": 1,
                        "min_learning_rate": 0.0001,
                    },
                },
                {"epochs": 1, "learning_rate": 0.001, "freeze": "none"},
            ],
            "output": {"uri": f"file://{out}/"},
        }
    )
    created = services.jobs.create(spec)

    assert Worker(services).run_once()

    record = services.jobs.get(created.id)
    assert record.status is JobStatus.SUCCEEDED, record.error
    phases = json.loads((out / "manifest.json").read_text())["phases"]
    first, second = (phase["settings"] for phase in phases)
    assert first["optimizer"] == {
        "name": "adamw",
        "class": "AdamW",
        "weight_decay": 0.004,  # Keras's own: the spec left it out
        "clipnorm": 0.5,
    }
    assert first["schedule"] == {
        "decay": "cosine",
        "warmup_steps": 4,  # 32 images in batches of 8
        "decay_steps": 4,
        "min_learning_rate": 0.0001,
        "steps_per_epoch": 4,
    }
    assert second["learning_rate"] == pytest.approx(0.001) and second["schedule"] is None
    assert first["loss"] == {"name": "categorical_crossentropy", "label_smoothing": 0.05}
    assert first["early_stopping"] == {"monitor": "loss", "patience": 3, "min_delta": 0.001}
    assert first["head_l2"] == pytest.approx(0.01)
    assert [phase["lr_schedule"]["type"] for phase in phases] == ["cosine", "constant"]
