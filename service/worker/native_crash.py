"""A trainer child killed by its own native code: named for what it is, retried once, not forever.

A trainer that dies of SIGSEGV, SIGABRT, SIGBUS, SIGILL or SIGFPE crashed inside native code
(TensorFlow's kernels, oneDNN's among them), not in Python: no exception was raised and no
Failed message came. ``ChildWhereabouts`` follows the progress messages the child sent, so that
the failure (``trainer_crashed``) says what was running: starting, loading, which phase of the
schedule and which epoch, exporting. ``crash_retry_environment`` gives the one retry a crash
earns: the same request with oneDNN off (TensorFlow's own kernels), unless it already ran so.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping

from service.contract.messages import (
    CheckpointWritten,
    EpochEnded,
    Info,
    PhaseStarted,
    ProgressMessage,
)
from service.contract.native_kernels import ONEDNN_OFF
from service.worker.errors import JobFailure

#: The job error code of a trainer that crashed in native code.
TRAINER_CRASHED = "trainer_crashed"
#: Signals a process gets from its own faulty native code (never from the worker or the kernel's
#: OOM killer, which sends SIGKILL).
NATIVE_CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}
)


class ChildWhereabouts:
    """What a trainer child was doing, from the progress messages it sent (``see`` each one)."""

    def __init__(self) -> None:
        self.step: str | None = None
        self.phase_index: int | None = None
        self.freeze: object = None
        self.epochs_ended = 0
        self.epochs: int | None = None
        self.last_message: str | None = None

    def see(self, message: ProgressMessage) -> None:
        """Take one progress message into account."""
        match message:
            case PhaseStarted(phase=phase):
                self.step = phase
                self.last_message = f"started {phase}"
            case Info(message=text, data=data):
                if "phase_index" in data and "freeze" in data:  # a phase of the schedule starts
                    self.phase_index = int(data["phase_index"])
                    self.freeze = data["freeze"]
                self.last_message = text
            case EpochEnded(epoch=epoch, epochs=epochs, phase_index=index):
                self.epochs_ended, self.epochs, self.phase_index = epoch, epochs, index
                self.last_message = f"epoch {epoch} of {epochs} ended"
            case CheckpointWritten(epoch=epoch):
                self.last_message = f"checkpoint of epoch {epoch} written"

    @property
    def epoch(self) -> int | None:
        """The 1-based epoch (counted across phases) that was running, in the training step."""
        return self.epochs_ended + 1 if self.step == "training" else None

    def describe(self) -> str:
        """Where the child was, in words: ``while training (phase 2 ..., epoch 3 of 10)``."""
        if self.step is None:
            return "while it started (before it reported anything)"
        if self.step == "loading":
            return "while loading the model and the data"
        if self.step == "exporting":
            return "while exporting the trained model"
        where = []
        if self.phase_index is not None:
            freeze = "" if self.freeze is None else f", freeze {json.dumps(self.freeze)}"
            where.append(f"phase {self.phase_index + 1} of the schedule{freeze}")
        of = f" of {self.epochs}" if self.epochs else ""
        where.append(f"epoch {self.epoch}{of}")
        return f"while training ({', '.join(where)})"

    def data(self) -> dict[str, object]:
        """For the job's events."""
        return {
            "step": self.step,
            "phase_index": self.phase_index,
            "epoch": self.epoch,
            "last_message": self.last_message,
        }


class TrainerCrashed(JobFailure):
    """The trainer child died of a native crash signal (code ``trainer_crashed``).

    Attributes:
        signal_name: ``SIGSEGV``, ``SIGABRT``, ...
        whereabouts: What the child was doing.
        environment: The kernel settings it ran with (empty: the defaults).
    """

    def __init__(
        self,
        signal_name: str,
        whereabouts: ChildWhereabouts,
        environment: Mapping[str, str],
        retried: bool = False,
    ) -> None:
        self.signal_name = signal_name
        self.whereabouts = whereabouts
        self.environment = dict(environment)
        super().__init__(TRAINER_CRASHED, self._message(retried))

    def _message(self, retried: bool) -> str:
        whereabouts = self.whereabouts
        last = (
            f" The last thing it reported: {whereabouts.last_message}."
            if (whereabouts.last_message)
            else ""
        )
        settings = ", ".join(f"{k}={v}" for k, v in self.environment.items())
        ran = f" It ran with {settings}." if settings else ""
        again = (
            " It had crashed once before and was retried with oneDNN off; it crashed again, so "
            "it is not retried any more."
            if retried
            else ""
        )
        return (
            f"The training process crashed with {self.signal_name} {whereabouts.describe()}: "
            "a fault in TensorFlow's native code, not an error the job spec caused."
            f"{last}{ran}{again} What may avoid it: freeze the base model's layers that train "
            'in that phase (freeze: "base", or a larger first_n), or use another '
            "dataset.image_size or base model; operators find the process's last output in "
            "the worker's log."
        )


def crash_signal(code: int | None) -> str | None:
    """The name of the native crash signal a child's exit status reports (None: not one)."""
    if code is None or code >= 0 or -code not in NATIVE_CRASH_SIGNALS:
        return None
    return signal.Signals(-code).name


def crash_retry_environment(
    failure: JobFailure, environment: Mapping[str, str]
) -> dict[str, str] | None:
    """The kernel settings of the one retry a native crash gets; None: no retry (fail).

    Only a crash is retried, and only where oneDNN was not already off.
    """
    if not isinstance(failure, TrainerCrashed):
        return None
    if all(environment.get(name) == value for name, value in ONEDNN_OFF.items()):
        return None
    retry = {k: v for k, v in environment.items() if not k.startswith("ONEDNN_")}
    return {**retry, **ONEDNN_OFF}
