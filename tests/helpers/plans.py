"""Plan settings for tests, read from a spec the schema loaded: every default is the schema's."""

from __future__ import annotations

from typing import Any

from service.contract.plan import EarlyStoppingSettings, HeadSettings, TrainingPlan
from tests.helpers.specs import loaded_spec


def training_plan(**sections: Any) -> TrainingPlan:
    """The plan of a minimal valid spec with ``sections`` (as a client writes them) merged in."""
    return TrainingPlan.from_spec(loaded_spec(**sections))


def head_settings(**head: Any) -> HeadSettings:
    """The head of a spec whose ``head`` object is ``head`` (the schema fills in the rest)."""
    settings = training_plan(head=head).head
    assert settings is not None
    return settings


def early_stopping_settings(**fields: Any) -> EarlyStoppingSettings:
    """``training.early_stopping`` with ``fields`` given (the schema fills in the rest)."""
    settings = training_plan(training={"early_stopping": fields}).training.early_stopping
    assert settings is not None
    return settings
