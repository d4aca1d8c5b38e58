"""The recipe's names the schema checks and the trainer builds: optimizers, their options, the
losses that take label smoothing, the learning-rate schedules. Plain data, no Keras.
"""

from __future__ import annotations

#: Each optimizer of ``training.optimizer`` and the optional ``training`` fields it takes
#: (besides ``clipnorm``, which every optimizer takes). Keras has Nesterov momentum in SGD only.
OPTIMIZER_OPTIONS: dict[str, tuple[str, ...]] = {
    "adam": (),
    "adamw": ("weight_decay",),
    "sgd": ("weight_decay", "momentum", "nesterov"),
    "rmsprop": ("momentum",),
}
OPTIMIZERS: tuple[str, ...] = tuple(OPTIMIZER_OPTIONS)

#: The losses (``training.loss``) whose Keras class takes ``label_smoothing``: one-hot or 0/1
#: labels. Sparse (integer) labels cannot be smoothed.
LABEL_SMOOTHING_LOSSES: tuple[str, ...] = (
    "categorical_crossentropy",
    "binary_crossentropy",
    "categorical_focal_crossentropy",
    "binary_focal_crossentropy",
)

CONSTANT = "constant"
COSINE = "cosine"
EXPONENTIAL = "exponential"
#: ``lr_schedule.type``: after the warmup, keep the rate, or decay it to the minimum.
LR_SCHEDULES: tuple[str, ...] = (CONSTANT, COSINE, EXPONENTIAL)


def optimizers_taking(option: str) -> tuple[str, ...]:
    """The optimizers that take ``option`` (a ``training`` field name), in catalogue order."""
    return tuple(name for name, options in OPTIMIZER_OPTIONS.items() if option in options)
