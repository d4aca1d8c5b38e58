"""The typed messages a trainer child sends its parent, and their JSON form on the wire.

A child (a job's trainer or a dry run's inspector) sends ``Ready`` once it has imported
TensorFlow, then, once given its request, any number of progress messages (``PhaseStarted``,
``Info``, ``EpochEnded``, ``CheckpointWritten``) and, last, exactly one of ``TrainingFinished``,
``InspectionFinished`` or ``Failed``. The parent dispatches on the class
(``match message: case EpochEnded(): ...``), never on strings; ``encode``/``decode`` are the
only places that know the ``type`` tags. On the wire each message is one line of JSON
(``to_line``/``from_line``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from service.contract.request import TrainingOutcome

TrainerPhase = Literal["loading", "training", "exporting"]


DeviceKind = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class Ready:
    """The child has imported TensorFlow and the trainer and waits for its one request.

    Attributes:
        devices: The devices it may train on (a job's ``resources.gpus`` at most this).
        device_kind: ``gpu`` where TensorFlow sees GPUs, else ``cpu`` (logical CPU devices
            included). A child that could not list its devices (TensorFlow failed to import)
            says one CPU: its worker then claims one-device jobs, which fail with that error.
    """

    devices: int = 1
    device_kind: DeviceKind = "cpu"


@dataclass(frozen=True)
class PhaseStarted:
    """The trainer entered a new step of its work (shown as the job's ``progress.phase``)."""

    phase: TrainerPhase


@dataclass(frozen=True)
class Info:
    """Something the job's events should say, with structured data for clients."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEnded:
    """An epoch finished (its checkpoint, where there is one, was reported before this).

    Attributes:
        epoch: 1-based, counted across phases.
        epochs: Epochs planned in all phases (as known now: early stopping may end sooner).
        phase_index: 0-based phase of the schedule.
        metrics: The epoch's logs (loss, metrics, val_*).
    """

    epoch: int
    epochs: int
    phase_index: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class CheckpointWritten:
    """A complete checkpoint of ``epoch`` is in the local folder ``path``, to be uploaded."""

    path: str
    epoch: int
    phase_index: int


@dataclass(frozen=True)
class TrainingFinished:
    """The last message of a successful training run."""

    outcome: TrainingOutcome


@dataclass(frozen=True)
class InspectionFinished:
    """The last message of a dry run's inspection: field errors (none: valid) and the report."""

    errors: dict[str, list[str]]
    report: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """The last message of a run that failed.

    Attributes:
        code: A job error code (``invalid_model``, ``incompatible``, ``internal``, ...).
        message: For the user: what to change.
        field: The spec field the failure concerns (``head.cut_at``), where one does.
        traceback: For operators' logs only, never for API clients.
    """

    code: str
    message: str
    field: str | None = None
    traceback: str = ""


ProgressMessage = PhaseStarted | Info | EpochEnded | CheckpointWritten
FinalMessage = TrainingFinished | InspectionFinished | Failed
ChildMessage = Ready | ProgressMessage | FinalMessage

_TAGS: dict[type[Any], str] = {
    Ready: "ready",
    PhaseStarted: "phase",
    Info: "info",
    EpochEnded: "epoch",
    CheckpointWritten: "checkpoint",
    TrainingFinished: "training_finished",
    InspectionFinished: "inspection_finished",
    Failed: "failed",
}
_CLASSES = {tag: cls for cls, tag in _TAGS.items()}


class MessageError(ValueError):
    """A message that is not one of the known kinds, or lacks a field."""


def encode(message: ChildMessage) -> dict[str, Any]:
    """The JSON-able form: the message's fields and its ``type`` tag."""
    return {"type": _TAGS[type(message)], **asdict(message)}


def decode(data: dict[str, Any]) -> ChildMessage:
    """The inverse of ``encode``.

    Raises:
        MessageError: Unknown ``type`` or fields that do not fit it.
    """
    fields = dict(data)
    cls = _CLASSES.get(str(fields.pop("type", "")))
    if cls is None:
        raise MessageError(f"unknown child message type: {data.get('type')!r}")
    try:
        if cls is TrainingFinished:
            return TrainingFinished(TrainingOutcome.from_dict(fields["outcome"]))
        message: ChildMessage = cls(**fields)
    except (KeyError, TypeError) as exc:
        raise MessageError(f"malformed {cls.__name__} message: {exc}") from exc
    return message


def is_final(message: ChildMessage) -> bool:
    """Whether ``message`` is the last one a child sends."""
    return isinstance(message, TrainingFinished | InspectionFinished | Failed)


def to_line(message: ChildMessage) -> bytes:
    """The message as one line of JSON, newline included, as the child writes it."""
    return json.dumps(encode(message)).encode() + b"\n"


def from_line(line: bytes) -> ChildMessage:
    """The inverse of ``to_line``.

    Raises:
        MessageError: Not JSON, or not a known message.
    """
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise MessageError(f"not a JSON line: {line[:200]!r}") from exc
    if not isinstance(data, dict):
        raise MessageError(f"not a JSON object: {line[:200]!r}")
    return decode(data)
