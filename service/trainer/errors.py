"""Errors the trainer reports to the worker, each with a job error code of API.md."""

from __future__ import annotations


class TrainerError(Exception):
    """A failure the user can act on; ``message`` says what to change."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidModel(TrainerError):
    """The base model file cannot be opened, or is refused as unsafe."""

    code = "invalid_model"


class InvalidDataset(TrainerError):
    """The dataset is missing, empty or unreadable."""

    code = "invalid_dataset"


class Incompatible(TrainerError):
    """Model, data and spec do not fit together (shapes, class counts, layer names)."""

    code = "incompatible"


class OutOfMemory(TrainerError):
    """The device or host ran out of memory."""

    code = "out_of_memory"
