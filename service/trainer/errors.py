"""Errors the trainer reports to the worker, each with a job error code of API.md."""

from __future__ import annotations

import re

#: A message that starts with a spec field names it: ``head.cut_at ...``, ``schedule[1].freeze``.
_FIELD_PREFIX = re.compile(
    r"^(base_model|dataset|head|freeze|training|schedule|output|gate|limits|resources|compare_with)"
    r"((?:\.[a-z_]+|\[\d+\])*)"
)


class TrainerError(Exception):
    """A failure the user can act on; ``message`` says what to change.

    Args:
        message: What is wrong and what to change, for the user.
        field: The spec field at fault as a dotted path (``head.cut_at``,
            ``schedule.1.freeze``), where one is; the dry run reports the error under it.
    """

    code = "internal"
    default_field: str | None = None

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field or field_of(message) or self.default_field


def field_of(message: str) -> str | None:
    """The dotted spec field a message starts with (``schedule.1.freeze``), or None."""
    match = _FIELD_PREFIX.match(message)
    if match is None:
        return None
    path = match.group(1) + re.sub(r"\[(\d+)\]", r".\1", match.group(2))
    return "base_model.uri" if path == "base_model" else path


class InvalidModel(TrainerError):
    """The base model file cannot be opened, or is refused as unsafe."""

    code = "invalid_model"
    default_field = "base_model.uri"


class InvalidDataset(TrainerError):
    """The dataset is missing, empty or unreadable."""

    code = "invalid_dataset"
    default_field = "dataset.train"


class Incompatible(TrainerError):
    """Model, data and spec do not fit together (shapes, class counts, layer names)."""

    code = "incompatible"


class OutOfMemory(TrainerError):
    """The device or host ran out of memory."""

    code = "out_of_memory"
