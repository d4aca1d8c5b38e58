"""Per-epoch checkpoints and resuming from one.

A checkpoint is a folder ``epoch-<k>/`` holding the model's weights in ``model.get_weights()``
order (``model.weights.npz``), the optimizer's variables in order (``optimizer.npz``: its step
counter and every slot), and ``state.json`` (the global epoch, the phase and the epoch the phase
began at, the history so far). It is written under a temporary name and renamed when complete,
so a half-written checkpoint is never reported. The worker uploads each one and deletes the
local copy.

The callback copies the weights at the epoch's end (milliseconds) and, given a
BackgroundReporter, writes the files on its thread while the next epoch trains (plain ``.npz``
rather than Keras's ``.weights.h5``: that writer needs the live model, and took seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from service.contract.messages import CheckpointWritten
from service.trainer.callbacks import scalar_metrics
from service.trainer.errors import TrainerError
from service.trainer.reporting import BackgroundReporter, Report

WEIGHTS_FILE = "model.weights.npz"
#: The weights file of checkpoints written before the .npz snapshots.
LEGACY_WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class ResumeState:
    """Where an interrupted run stopped.

    Attributes:
        directory: The checkpoint folder.
        epoch: Global epochs finished (1-based count across phases).
        phase_index: The phase the last finished epoch belonged to.
        phase_start_epoch: Global epochs finished when that phase began.
        history: The history entries of every finished epoch.
    """

    directory: Path
    epoch: int
    phase_index: int
    phase_start_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


class CheckpointCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Saves a checkpoint at the end of every epoch and reports it.

    It goes before ProgressCallback in the callback list, and both report through the same
    ordered channel: the worker handles messages in order, so a job's progress shows epoch k
    only once the checkpoint after epoch k is stored.

    Args:
        directory: Where ``epoch-<k>/`` folders go.
        phase_index: The phase this ``fit`` runs.
        phase_start_epoch: Global epochs finished when the phase began.
        history: The shared history list (ProgressCallback appends this epoch after us).
        report: Receives one CheckpointWritten per checkpoint.
        writer: Writes and reports on its own thread, in order; None writes inline. At most
            one snapshot waits for it (the next epoch's end waits for the previous write).
        weights_of: The model whose weights are saved; None: the model being fit (a phase
            on cached features fits only the layers after the frozen prefix).
    """

    def __init__(
        self,
        directory: str,
        phase_index: int,
        phase_start_epoch: int,
        history: list[dict[str, Any]],
        report: Report,
        writer: BackgroundReporter | None = None,
        weights_of: keras.Model | None = None,
    ) -> None:
        super().__init__()
        self.weights_of = weights_of
        self.directory = Path(directory)
        self.phase_index = phase_index
        self.phase_start_epoch = phase_start_epoch
        self.history = history
        self.report = report
        self.writer = writer
        self._written = threading.Event()
        self._written.set()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Keras calls this with the 0-based global epoch."""
        done = epoch + 1
        self._written.wait()
        # Host copies, taken now: training goes on changing the variables while they are written.
        saved = self.model if self.weights_of is None else self.weights_of
        weights = [np.asarray(value) for value in saved.get_weights()]
        variables = [np.asarray(variable) for variable in self.model.optimizer.variables]
        history = list(self.history)
        if not history or history[-1]["epoch"] != done:  # runs before ProgressCallback
            history.append({"epoch": done, "phase": self.phase_index, **scalar_metrics(logs)})
        state = {
            "epoch": done,
            "phase_index": self.phase_index,
            "phase_start_epoch": self.phase_start_epoch,
            "history": history,
        }
        if self.writer is None:
            self._write(done, weights, variables, state)
            return
        self._written.clear()

        def write() -> None:
            try:
                self._write(done, weights, variables, state)
            finally:
                self._written.set()

        self.writer.submit(write)

    def _write(
        self,
        done: int,
        weights: list[np.ndarray],
        variables: list[np.ndarray],
        state: dict[str, Any],
    ) -> None:
        target = self.directory / f"epoch-{done:05d}"
        temporary = self.directory / f".tmp-epoch-{done:05d}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        np.savez(temporary / WEIGHTS_FILE, *weights)
        np.savez(temporary / OPTIMIZER_FILE, *variables)
        (temporary / STATE_FILE).write_text(json.dumps(state))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(temporary, target)
        self.report(CheckpointWritten(str(target), done, self.phase_index))


def load_resume_state(directory: str) -> ResumeState:
    """Read a checkpoint folder's state; TrainerError where it is unusable."""
    path = Path(directory)
    try:
        state = json.loads((path / STATE_FILE).read_text())
        return ResumeState(
            directory=path,
            epoch=int(state["epoch"]),
            phase_index=int(state["phase_index"]),
            phase_start_epoch=int(state["phase_start_epoch"]),
            history=list(state["history"]),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise TrainerError(
            f"The job's checkpoint in {path.name} is unreadable; cancel and resubmit the job."
        ) from exc


def restore_weights(model: keras.Model, state: ResumeState) -> None:
    """Load the checkpoint's weights into a model built the same way.

    Raises:
        TrainerError: The weights do not fit the model (the spec or the base model changed).
    """
    legacy = state.directory / LEGACY_WEIGHTS_FILE
    if legacy.exists() and not (state.directory / WEIGHTS_FILE).exists():
        # Written by a worker of an earlier version (Keras's own weights file).
        model.load_weights(legacy)
        return
    arrays = _arrays(state.directory / WEIGHTS_FILE)
    weights = model.weights
    if len(arrays) != len(weights) or any(
        tuple(a.shape) != tuple(w.shape) for a, w in zip(arrays, weights, strict=True)
    ):
        raise TrainerError(
            "The job's checkpoint does not fit the model it rebuilt (the spec or "
            "the base model changed); cancel and resubmit the job."
        )
    model.set_weights(arrays)


def _arrays(path: Path) -> list[np.ndarray]:
    try:
        with np.load(path) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]
    except (OSError, ValueError, KeyError) as exc:
        raise TrainerError(
            f"The job's checkpoint in {path.parent.name} is unreadable; cancel and resubmit "
            "the job."
        ) from exc


def restore_optimizer(model: keras.Model, state: ResumeState) -> None:
    """Give the freshly compiled model's optimizer the checkpoint's variables (moments, step)."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    arrays = _arrays(state.directory / OPTIMIZER_FILE)
    variables = list(optimizer.variables)
    if len(arrays) != len(variables) or any(
        tuple(a.shape) != tuple(v.shape) for a, v in zip(arrays, variables, strict=True)
    ):
        raise TrainerError(
            "The job's checkpoint does not fit the model it rebuilt (the spec or "
            "the base model changed); cancel and resubmit the job."
        )
    for variable, array in zip(variables, arrays, strict=True):
        variable.assign(array)
