"""Compiling the model: the spec's optimizer with its options, learning rate, loss, metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import keras

from service.contract.plan import TrainingSettings
from service.trainer.devices import compile_settings
from service.trainer.errors import Incompatible

OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}
#: The Keras classes of the losses that take label smoothing (the schema allows label smoothing
#: with service.contract.recipe.LABEL_SMOOTHING_LOSSES, these names).
SMOOTHABLE_LOSSES: dict[str, type[keras.losses.Loss]] = {
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "categorical_focal_crossentropy": keras.losses.CategoricalFocalCrossentropy,
    "binary_focal_crossentropy": keras.losses.BinaryFocalCrossentropy,
}
#: A phase's rate, or its schedule (schedules.phase_learning_rate).
LearningRate: TypeAlias = float | keras.optimizers.schedules.LearningRateSchedule
# Names model.compile understands that keras.metrics.get does not.
COMPILE_ONLY_METRICS = ("acc", "accuracy", "crossentropy", "ce")


def check_loss_and_metrics(loss: str, metrics: Sequence[str]) -> None:
    """Fails early, before any data is read, on a loss or metric name Keras does not know.

    Raises:
        Incompatible: Naming the unknown loss or metric.
    """
    try:
        keras.losses.get(loss)
    except (ValueError, TypeError) as exc:
        raise Incompatible(
            f"training.loss {loss!r} is not a Keras loss; use e.g. 'categorical_crossentropy', "
            "'sparse_categorical_crossentropy' or 'binary_crossentropy'."
        ) from exc
    for metric in metrics:
        if metric in COMPILE_ONLY_METRICS:
            continue
        try:
            keras.metrics.get(metric)
        except (ValueError, TypeError) as exc:
            raise Incompatible(
                f"training.metrics: {metric!r} is not a Keras metric; use e.g. 'accuracy', 'auc', "
                "'precision' or 'recall'."
            ) from exc


def optimizer_arguments(training: TrainingSettings) -> dict[str, Any]:
    """The spec's optimizer options that are set, as keyword arguments of its Keras class.

    An option left null is not passed, so the optimizer keeps Keras's own default (AdamW's
    weight decay). The schema allowed only the options the optimizer takes.
    """
    given = {
        "weight_decay": training.weight_decay,
        "momentum": training.momentum,
        "nesterov": training.nesterov or None,
        "clipnorm": training.clipnorm,
    }
    return {name: value for name, value in given.items() if value is not None}


def make_optimizer(
    training: TrainingSettings, learning_rate: LearningRate
) -> keras.optimizers.Optimizer:
    """A fresh optimizer (each phase starts with new optimizer state).

    Args:
        training: The optimizer's name and options.
        learning_rate: The phase's rate, or its schedule (schedules.phase_learning_rate).

    Raises:
        Incompatible: Unknown optimizer name.
    """
    try:
        optimizer = OPTIMIZERS[training.optimizer]
    except KeyError:
        raise Incompatible(
            f"training.optimizer {training.optimizer!r} is not supported; use one of "
            f"{', '.join(OPTIMIZERS)}."
        ) from None
    return optimizer(learning_rate=learning_rate, **optimizer_arguments(training))


def make_loss(training: TrainingSettings) -> str | keras.losses.Loss:
    """The loss to compile: its Keras name, or its class where it smooths the labels."""
    if training.label_smoothing == 0:
        return training.loss
    return SMOOTHABLE_LOSSES[training.loss](label_smoothing=training.label_smoothing)


def compile_model(
    model: keras.Model, training: TrainingSettings, learning_rate: LearningRate
) -> None:
    """Compiles ``model``; call again after every change of what is trainable.

    Args:
        model: The model to train.
        training: Optimizer, its options, loss, label smoothing and metrics.
        learning_rate: The phase's rate, or its schedule.

    XLA stays off on CPUs, where it makes training several times slower (devices.py).
    """
    model.compile(
        optimizer=make_optimizer(training, learning_rate),
        loss=make_loss(training),
        metrics=list(training.metrics),
        jit_compile=compile_settings().jit_compile,
    )


def compile_alike(
    model: keras.Model, like: keras.Model, training: TrainingSettings, steps_per_execution: int = 1
) -> None:
    """Compiles ``model`` with ``like``'s optimizer (the same object) and loss.

    For a part of ``like`` trained on its own (features.py): the optimizer's state, its step
    and its schedule are then ``like``'s, as if ``like`` itself were trained.
    ``steps_per_execution`` batches run in one call of the training function: the same steps
    in the same order, with less of Keras's and TensorFlow's per-call cost (which outweighs
    the step itself for a small head on cached features).
    """
    model.compile(
        optimizer=like.optimizer,
        loss=like.loss,
        metrics=list(training.metrics),
        jit_compile=compile_settings().jit_compile,
        steps_per_execution=steps_per_execution,
    )
