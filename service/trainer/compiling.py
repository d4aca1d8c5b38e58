"""Compiling the model with the spec's optimizer, learning rate, loss and metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from service.trainer.devices import compile_settings
from service.trainer.errors import Incompatible

OPTIMIZERS: dict[str, Callable[[float], keras.optimizers.Optimizer]] = {
    "adam": lambda lr: keras.optimizers.Adam(learning_rate=lr),
    "adamw": lambda lr: keras.optimizers.AdamW(learning_rate=lr),
    "sgd": lambda lr: keras.optimizers.SGD(learning_rate=lr),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(learning_rate=lr),
}
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


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A fresh optimizer (each phase starts with new optimizer state).

    Raises:
        Incompatible: Unknown optimizer name.
    """
    try:
        return OPTIMIZERS[name](learning_rate)
    except KeyError:
        raise Incompatible(
            f"training.optimizer {name!r} is not supported; use one of {', '.join(OPTIMIZERS)}."
        ) from None


def compile_model(
    model: keras.Model,
    *,
    optimizer: str,
    learning_rate: float,
    loss: str,
    metrics: Sequence[str],
) -> None:
    """Compiles ``model``; call again after every change of what is trainable.

    XLA stays off on CPUs, where it makes training several times slower (devices.py).
    """
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=loss,
        metrics=list(metrics),
        jit_compile=compile_settings().jit_compile,
    )
