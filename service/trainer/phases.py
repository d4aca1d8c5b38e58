"""What each phase of the schedule freezes and trains: one summary, seen three ways.

A job's events show it when the phase starts (``PhaseSummary.info``), the dry run's report lists
it (``report``), and the training outcome records it with what the phase ran (``outcome``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from service.contract.messages import Info
from service.contract.plan import Phase
from service.trainer.freezing import Freezer, FreezeSummary


@dataclass(frozen=True)
class PhaseSummary:
    """A phase and what its freeze rule left trainable.

    Attributes:
        phase: The phase of the plan.
        phases: How many phases the schedule has.
        freezing: What applying the phase's rule left trainable.
    """

    phase: Phase
    phases: int
    freezing: FreezeSummary

    @classmethod
    def freeze(cls, freezer: Freezer, phase: Phase, phases: int) -> PhaseSummary:
        """Applies ``phase``'s freeze rule (the model must be compiled again after).

        Raises:
            Incompatible: The rule does not fit the model (see Freezer.apply).
        """
        return cls(phase, phases, freezer.apply(phase.freeze, phase.freeze_field))

    def report(self) -> dict[str, Any]:
        """The dry run's form (schemas.dry_run.PhaseReportSchema)."""
        return {"index": self.phase.index, **self._described()}

    def info(self) -> Info:
        """The event a job shows when the phase starts."""
        phase, freezing = self.phase, self.freezing
        schedule = phase.lr_schedule
        moving = "" if schedule.constant else f" ({schedule.describe()})"
        return Info(
            f"Phase {phase.index + 1} of {self.phases}: {phase.epochs} epochs at learning rate "
            f"{phase.learning_rate:g}{moving}; freeze {phase.freeze.describe()} froze "
            f"{len(freezing.frozen_layers)} base layers; {freezing.trainable_weights} weight "
            f"tensors ({freezing.trainable_params} parameters) train.",
            {
                "phase_index": phase.index,
                **self._described(),
                "lr_schedule": dataclasses.asdict(schedule),
            },
        )

    def outcome(
        self,
        epochs_run: int,
        seconds: float,
        restored_epoch: int | None,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        """The training outcome's entry for the phase, once it ran.

        Args:
            epochs_run: Epochs the phase ran (early stopping may end it sooner).
            seconds: How long it took.
            restored_epoch: The epoch whose weights early stopping restored, if any.
            settings: What it trained with, read back from Keras (effective.effective_settings).
        """
        return {
            "index": self.phase.index,
            "epochs_planned": self.phase.epochs,
            "epochs_run": epochs_run,
            "seconds": seconds,
            "learning_rate": self.phase.learning_rate,
            "freeze": self.phase.freeze.to_spec(),
            "trainable_weights": self.freezing.trainable_weights,
            "frozen_layers": len(self.freezing.frozen_layers),
            "restored_epoch": restored_epoch,
            "lr_schedule": dataclasses.asdict(self.phase.lr_schedule),
            "settings": settings,
        }

    def _described(self) -> dict[str, Any]:
        freezing = self.freezing
        return {
            "epochs": self.phase.epochs,
            "learning_rate": self.phase.learning_rate,
            "freeze": self.phase.freeze.to_spec(),
            "frozen_layers": freezing.frozen_layers,
            "frozen_batch_norms": freezing.frozen_batch_norms,
            "trainable_weights": freezing.trainable_weights,
            "trainable_params": freezing.trainable_params,
            "non_trainable_params": freezing.non_trainable_params,
        }
