"""What a phase really trained with, read back from the compiled Keras objects.

The manifest records it per phase (``phases[i].settings``), so that a reader sees the values
Keras used, defaults of Keras's own included (AdamW's weight decay where the spec left it out),
rather than only what the spec asked for.
"""

from __future__ import annotations

from typing import Any

import keras

from service.contract.plan import TrainingSettings
from service.trainer.model_surgery import BuiltModel

#: The optimizer options recorded, where the optimizer's config has them.
OPTIMIZER_KEYS = ("weight_decay", "momentum", "nesterov", "clipnorm")


def effective_settings(
    built: BuiltModel,
    training: TrainingSettings,
    steps_per_epoch: int,
    stopper: keras.callbacks.EarlyStopping | None,
) -> dict[str, Any]:
    """The phase's optimizer, learning rate (and schedule), loss, early stopping and head L2.

    Args:
        built: The model, compiled for the phase.
        training: The spec's training settings (for the names Keras does not keep).
        steps_per_epoch: Batches per epoch.
        stopper: The phase's EarlyStopping callback, if any.
    """
    optimizer = built.model.optimizer
    # A mixed-precision LossScaleOptimizer wraps the optimizer the spec named.
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    config = inner.get_config()
    loss = built.model.loss
    return {
        "optimizer": {
            "name": training.optimizer,
            "class": type(inner).__name__,
            **{key: config[key] for key in OPTIMIZER_KEYS if key in config},
        },
        **_learning_rate(config, steps_per_epoch),
        "loss": {
            "name": training.loss,
            "label_smoothing": float(loss.get_config()["label_smoothing"])
            if isinstance(loss, keras.losses.Loss)
            else 0.0,
        },
        "early_stopping": None
        if stopper is None
        else {
            "monitor": stopper.monitor,
            "patience": stopper.patience,
            "min_delta": abs(float(stopper.min_delta)),
        },
        "head_l2": _head_l2(built),
    }


def _learning_rate(config: dict[str, Any], steps_per_epoch: int) -> dict[str, Any]:
    """The rate from the optimizer's config: a float, or a serialized PhaseLearningRate."""
    rate = config["learning_rate"]
    if not isinstance(rate, dict):
        return {"learning_rate": float(rate), "schedule": None}
    schedule = dict(rate["config"])
    return {
        "learning_rate": schedule.pop("learning_rate"),
        "schedule": {**schedule, "steps_per_epoch": steps_per_epoch},
    }


def _head_l2(built: BuiltModel) -> float:
    """The L2 factor of the head's Dense kernels (0 without a penalty)."""
    for layer in built.head_layers:
        regularizer = getattr(layer, "kernel_regularizer", None)
        if regularizer is not None:
            return float(regularizer.get_config()["l2"])
    return 0.0
