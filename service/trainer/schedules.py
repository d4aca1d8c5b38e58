"""The learning rate within a phase: a Keras LearningRateSchedule of the optimizer's step.

Each phase compiles a fresh optimizer, so its step counter (``optimizer.iterations``, which the
checkpoints keep) counts the phase's own steps from 0. With ``S`` steps per epoch, the phase's
rate ``r``, ``W = warmup_epochs * S`` warmup steps and ``D = epochs * S - W`` steps after them,
the rate at step ``s`` is:

- ``s < W``: ``r * (s + 1) / W``, a line from near 0 to ``r`` (the first step already learns);
- after: with ``t = min(s - W, D) / D``, ``r`` (constant), ``m + (r - m) * (1 + cos(pi * t)) / 2``
  (cosine) or ``r * (m / r) ** t`` (exponential), where ``m`` is ``min_learning_rate``; both
  decays reach ``m`` at the phase's end and stay there.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from service.contract.plan import LrScheduleSettings
from service.contract.recipe import COSINE, EXPONENTIAL, LR_SCHEDULES


@keras.saving.register_keras_serializable(package="finetune", name="PhaseLearningRate")
class PhaseLearningRate(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
    """Warmup, then constant, cosine or exponential decay (the formula is the module's doc).

    Args:
        learning_rate: The phase's rate, reached at the warmup's end.
        warmup_steps: Steps of linear warmup (0: none).
        decay_steps: Steps after the warmup over which the rate decays (at least 1).
        decay: ``constant``, ``cosine`` or ``exponential``.
        min_learning_rate: Where the decay ends (above 0 for exponential).
    """

    def __init__(
        self,
        learning_rate: float,
        warmup_steps: int,
        decay_steps: int,
        decay: str,
        min_learning_rate: float,
    ) -> None:
        if decay not in LR_SCHEDULES:
            raise ValueError(f"Unknown decay. Received: decay={decay!r}")
        if decay_steps < 1 or warmup_steps < 0:
            raise ValueError(
                f"Steps out of range. Received: warmup_steps={warmup_steps}, "
                f"decay_steps={decay_steps}"
            )
        if decay == EXPONENTIAL and not 0 < min_learning_rate < learning_rate:
            raise ValueError(
                "An exponential decay needs 0 < min_learning_rate < learning_rate. Received: "
                f"min_learning_rate={min_learning_rate}, learning_rate={learning_rate}"
            )
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.decay = decay
        self.min_learning_rate = float(min_learning_rate)

    def __call__(self, step: Any) -> Any:
        """The rate at optimizer step ``step`` (0-based)."""
        ops = keras.ops
        step = ops.cast(step, "float32")
        rate = ops.cast(self.learning_rate, "float32")
        after_warmup = ops.clip(step - self.warmup_steps, 0.0, float(self.decay_steps))
        progress = after_warmup / float(self.decay_steps)
        floor = self.min_learning_rate
        if self.decay == COSINE:
            decayed = floor + (rate - floor) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.decay == EXPONENTIAL:
            decayed = rate * ops.power(floor / self.learning_rate, progress)
        else:
            decayed = rate * ops.ones_like(progress)
        if self.warmup_steps == 0:
            return decayed
        warming = rate * (step + 1.0) / float(self.warmup_steps)
        return ops.where(step < self.warmup_steps, warming, decayed)

    def get_config(self) -> dict[str, Any]:
        """The arguments, for Keras serialization."""
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "decay": self.decay,
            "min_learning_rate": self.min_learning_rate,
        }


def phase_learning_rate(
    settings: LrScheduleSettings, learning_rate: float, epochs: int, steps_per_epoch: int
) -> float | PhaseLearningRate:
    """What the optimizer takes as ``learning_rate`` in a phase: a float where it never moves.

    Args:
        settings: The phase's ``lr_schedule``.
        learning_rate: The phase's rate.
        epochs: The phase's epochs (the schema keeps the warmup shorter).
        steps_per_epoch: Batches per epoch.
    """
    if settings.constant:
        return learning_rate
    warmup = settings.warmup_epochs * steps_per_epoch
    return PhaseLearningRate(
        learning_rate,
        warmup_steps=warmup,
        decay_steps=max(1, epochs * steps_per_epoch - warmup),
        decay=settings.type,
        min_learning_rate=settings.min_learning_rate,
    )
