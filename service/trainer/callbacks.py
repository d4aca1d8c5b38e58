"""Reporting progress from ``model.fit`` at epoch ends (nothing runs per step)."""

from __future__ import annotations

import math
import os
from typing import Any

import keras

from service.contract.layout import TENSORBOARD_DIR
from service.contract.messages import EpochEnded
from service.trainer.reporting import Report


class ProgressCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Records each epoch's metrics and reports an EpochEnded message.

    Args:
        report: Receives one EpochEnded per epoch.
        phase_index: 0-based index of the phase this ``fit`` runs.
        epochs_total: Epochs planned over all phases (as known when the phase starts).
        history: Receives one ``{"epoch", "phase", <metrics>}`` entry per epoch; shared across
            phases so the epoch count continues.
    """

    def __init__(
        self,
        report: Report,
        phase_index: int,
        epochs_total: int,
        history: list[dict[str, Any]],
    ) -> None:
        super().__init__()
        if epochs_total < 1:
            raise ValueError(f"epochs_total must be at least 1. Received: {epochs_total}")
        self.report = report
        self.phase_index = phase_index
        self.epochs_total = epochs_total
        self.history = history

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Keras calls this with the 0-based epoch, counted from ``initial_epoch``."""
        metrics = scalar_metrics(logs)
        self.history.append({"epoch": epoch + 1, "phase": self.phase_index, **metrics})
        self.report(EpochEnded(epoch + 1, self.epochs_total, self.phase_index, metrics))


def scalar_metrics(logs: dict[str, Any] | None) -> dict[str, float]:
    """The finite scalar entries of Keras logs as plain floats (NaN and inf are not JSON)."""
    metrics: dict[str, float] = {}
    for name, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            metrics[name] = number
    return metrics


class EpochTensorBoard(keras.callbacks.TensorBoard):  # type: ignore[misc]
    """Keras's TensorBoard callback without its per-batch hooks.

    Keras's own runs Python after every batch even with ``update_freq="epoch"`` (a summary call
    per metric), and on backends that dispatch batch callbacks asynchronously (JAX) a callback
    with batch hooks turns that off, so every step would wait for its metrics to reach Python.
    With the base class's no-op hooks ``fit`` steps as it does with no callbacks; epoch scalars
    are written as before.
    """

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end
    on_test_batch_begin = keras.callbacks.Callback.on_test_batch_begin
    on_test_batch_end = keras.callbacks.Callback.on_test_batch_end


def tensorboard_callback(output_dir: str) -> keras.callbacks.TensorBoard:
    """Epoch-level scalars (``train/`` and ``validation/``) under ``output_dir/tensorboard``.

    No graph, no histograms, no profiling, no per-batch hooks: small files and no per-step
    cost. The epoch numbers continue across phases (each phase's ``fit`` starts at
    ``initial_epoch``).
    """
    return EpochTensorBoard(
        log_dir=os.path.join(output_dir, TENSORBOARD_DIR),
        histogram_freq=0,
        write_graph=False,
        write_images=False,
        update_freq="epoch",
        profile_batch=0,
    )
