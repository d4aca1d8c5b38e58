"""Reading the job spec into the trainer's settings (no TensorFlow)."""

from __future__ import annotations

import pytest

from service.trainer.errors import Incompatible
from service.trainer.plan import FreezeRule, TrainingPlan
from tests.trainer.support import job_spec


def test_one_phase_from_training_and_freeze_without_schedule() -> None:
    plan = TrainingPlan.from_spec(
        job_spec(freeze={"first_n": 4}, training={"epochs": 7, "learning_rate": 0.01})
    )

    assert plan.phases == (
        plan.phases[0].__class__(0, 7, 0.01, FreezeRule("first_n", 4), "freeze"),
    )
    assert plan.total_epochs == 7
    assert plan.head is None
    assert plan.data.preprocessing == "rescale"


def test_schedule_phases_inherit_learning_rate_and_freeze() -> None:
    plan = TrainingPlan.from_spec(
        job_spec(
            freeze="base",
            training={"learning_rate": 0.002},
            schedule=[
                {"epochs": 2},
                {"epochs": 3, "learning_rate": 1e-5, "freeze": {"until": "bn2"}},
            ],
        )
    )

    first, second = plan.phases
    assert (first.epochs, first.learning_rate, first.freeze, first.freeze_field) == (
        2,
        0.002,
        FreezeRule("base"),
        "freeze",
    )
    assert (second.epochs, second.learning_rate, second.freeze, second.freeze_field) == (
        3,
        1e-5,
        FreezeRule("until", "bn2"),
        "schedule[1].freeze",
    )
    assert plan.total_epochs == 5


def test_head_defaults_follow_the_api() -> None:
    plan = TrainingPlan.from_spec(job_spec(head={}))

    assert plan.head is not None
    assert (plan.head.cut_at, plan.head.pooling, plan.head.hidden_units) == (-2, "avg", ())
    assert plan.head.num_classes is None


@pytest.mark.parametrize(
    ("raw", "described"),
    [
        ("none", '"none"'),
        ("base", '"base"'),
        ({"first_n": 3}, '{"first_n": 3}'),
        ({"pattern": "^bn"}, '{"pattern": "^bn"}'),
    ],
)
def test_freeze_rule_describes_itself_as_written(raw: object, described: str) -> None:
    assert FreezeRule.parse(raw).describe() == described


@pytest.mark.parametrize("raw", ["all", {"first_n": -1}, {"pattern": "("}, {"a": 1, "b": 2}])
def test_malformed_freeze_rule_is_incompatible(raw: object) -> None:
    with pytest.raises(Incompatible, match="freeze"):
        FreezeRule.parse(raw)
