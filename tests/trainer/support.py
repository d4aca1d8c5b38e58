"""Building trainer requests for tests: a validated job spec with small, fast settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from service.contract.messages import ChildMessage
from service.contract.request import TrainingRequest
from tests.helpers.specs import loaded_spec

#: What the trainer tests change from the API defaults, section by section.
TEST_DEFAULTS: dict[str, dict[str, Any]] = {
    "dataset": {
        "train": "s3://data/digits/train/",
        "preprocessing": "rescale",
        "validation_split": 0.25,
    },
    "training": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "seed": 0},
}


def job_spec(**sections: Any) -> dict[str, Any]:
    """A validated spec (schemas.JobSpecSchema, defaults filled in).

    Dict sections are merged into TEST_DEFAULTS' section of the same name; anything else
    (``head={}``, ``freeze="base"``, ``schedule=[...]``) replaces the section.
    """
    merged: dict[str, Any] = {}
    for name in set(TEST_DEFAULTS) | set(sections):
        value = sections.get(name, {})
        if name in TEST_DEFAULTS and isinstance(value, dict):
            value = {**TEST_DEFAULTS[name], **value}
        merged[name] = value
    return loaded_spec(**merged)


def make_request(
    tmp_path: Path,
    base: Path,
    train: Path,
    validation: Path | None = None,
    **sections: Any,
) -> TrainingRequest:
    """A request whose output goes to ``tmp_path / "out"``; ``sections`` as for job_spec."""
    return TrainingRequest(
        job_id="ftj_test",
        spec=job_spec(**sections),
        base_model_path=str(base),
        train_path=str(train),
        validation_path=None if validation is None else str(validation),
        output_dir=str(tmp_path / "out"),
    )


@dataclass
class InMemoryData:
    """In-memory arrays, as fit_phases takes them (no tf.data)."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None = None


M = TypeVar("M")


class Recorder:
    """A report (or send) callback that keeps every typed message."""

    def __init__(self) -> None:
        self.messages: list[ChildMessage] = []

    def __call__(self, message: ChildMessage) -> None:
        self.messages.append(message)

    def of_type(self, kind: type[M]) -> list[M]:
        """The messages of class ``kind``."""
        return [m for m in self.messages if isinstance(m, kind)]

    def kinds(self, *classes: type) -> list[str]:
        """The class names of the messages, in order (of ``classes`` only, where given)."""
        return [type(m).__name__ for m in self.messages if not classes or isinstance(m, classes)]
