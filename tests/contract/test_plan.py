"""Reading a loaded job spec into plans (no TensorFlow); a missing key is named, never filled."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from marshmallow import ValidationError

from schemas import JobSpecSchema
from service.contract.errors import SpecKeyMissing
from service.contract.plan import (
    FreezeRule,
    Gate,
    JobPlan,
    Limits,
    LrScheduleSettings,
    Phase,
    TrainingPlan,
    with_batch_size,
    with_name_and_labels,
)
from tests.contract.spec_reads import FULL_SPEC_SECTIONS, SPEC_SHAPES, keys_read_by_the_plan
from tests.helpers.specs import loaded_spec, raw_spec

#: training.lr_schedule as the schema fills it in.
CONSTANT = LrScheduleSettings("constant", 0, 0.0)


def test_one_phase_from_training_and_freeze_without_schedule() -> None:
    plan = TrainingPlan.from_spec(
        loaded_spec(freeze={"first_n": 4}, training={"epochs": 7, "learning_rate": 0.01})
    )

    assert plan.phases == (Phase(0, 7, 0.01, FreezeRule("first_n", 4), "freeze", CONSTANT),)
    assert plan.total_epochs == 7
    assert plan.head is None
    assert plan.data.preprocessing == "none"  # auto, for a model file


def test_schedule_phases_inherit_learning_rate_and_freeze() -> None:
    plan = TrainingPlan.from_spec(
        loaded_spec(
            freeze="base",
            training={"learning_rate": 0.002},
            schedule=[
                {"epochs": 2},
                {"epochs": 3, "learning_rate": 1e-5, "freeze": {"until": "bn2"}},
            ],
        )
    )

    assert plan.phases == (
        Phase(0, 2, 0.002, FreezeRule("base", None), "freeze", CONSTANT),
        Phase(1, 3, 1e-5, FreezeRule("until", "bn2"), "schedule[1].freeze", CONSTANT),
    )
    assert plan.total_epochs == 5


def test_the_schema_defaults_are_what_the_plan_holds() -> None:
    plan = TrainingPlan.from_spec(loaded_spec(head={}))

    assert plan.head is not None
    assert (plan.head.cut_at, plan.head.pooling, plan.head.hidden_units) == (-2, "avg", ())
    assert plan.head.num_classes is None
    assert (plan.training.batch_size, plan.training.metrics) == (32, ("accuracy",))
    assert plan.training.augmentation is None and plan.training.early_stopping is None
    assert plan.phases == (Phase(0, 10, 1e-4, FreezeRule("none", None), "freeze", CONSTANT),)
    assert plan.phases[0].lr_schedule.constant
    training = plan.training
    assert (training.label_smoothing, training.weight_decay, training.momentum) == (0.0, None, None)
    assert (training.nesterov, training.clipnorm, plan.head.l2) == (False, None, 0.0)
    assert training.feature_cache == "auto"
    assert plan.resources.gpus == 1


def test_a_phase_lr_schedule_replaces_the_training_one_whole() -> None:
    plan = TrainingPlan.from_spec(
        loaded_spec(
            training={
                "learning_rate": 0.01,
                "lr_schedule": {"type": "cosine", "warmup_epochs": 1, "min_learning_rate": 1e-4},
            },
            schedule=[
                {"epochs": 2},
                {"epochs": 3, "lr_schedule": {"type": "exponential", "min_learning_rate": 1e-3}},
            ],
        )
    )

    first, second = (phase.lr_schedule for phase in plan.phases)
    assert first == LrScheduleSettings("cosine", 1, 1e-4)
    assert second == LrScheduleSettings("exponential", 0, 1e-3)  # no warmup: its own default
    assert first.describe() == "cosine to 0.0001 after 1 warmup epoch"
    assert not first.constant and not second.constant


def test_the_optimizer_loss_and_head_knobs_reach_the_plan() -> None:
    plan = TrainingPlan.from_spec(
        loaded_spec(
            head={"l2": 1e-3},
            training={
                "optimizer": "sgd",
                "weight_decay": 1e-4,
                "momentum": 0.9,
                "nesterov": True,
                "clipnorm": 1.0,
                "label_smoothing": 0.1,
                "early_stopping": {"min_delta": 0.01},
            },
        )
    )

    training = plan.training
    assert (training.optimizer, training.weight_decay, training.momentum) == ("sgd", 1e-4, 0.9)
    assert (training.nesterov, training.clipnorm, training.label_smoothing) == (True, 1.0, 0.1)
    assert training.early_stopping is not None and training.early_stopping.min_delta == 0.01
    assert plan.head is not None and plan.head.l2 == 1e-3


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
    assert FreezeRule.from_spec(raw).describe() == described  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["all", {"first_n": -1}, {"pattern": "("}, {"a": 1, "b": 2}])
def test_a_malformed_freeze_rule_never_reaches_the_plan(raw: object) -> None:
    with pytest.raises(ValidationError) as refused:
        JobSpecSchema().load(raw_spec(freeze=raw))

    assert "freeze" in refused.value.messages


def test_the_job_plan_reads_what_the_worker_and_the_api_need() -> None:
    plan = JobPlan.from_spec(loaded_spec(**FULL_SPEC_SECTIONS))

    assert (plan.name, plan.labels) == ("full", {"team": "vision"})
    assert plan.base_model.location == "s3://models/base/model.keras"
    assert (plan.dataset.train, plan.dataset.validation, plan.dataset.format) == (
        "s3://data/digits/train/",
        "s3://data/digits/validation/",
        "auto",
    )
    assert plan.output_uri == "s3://models/out/"
    assert plan.gate == Gate("val_accuracy", 0.5, None, None, None)
    assert plan.limits == Limits(max_runtime_seconds=86_400, max_attempts=3)
    assert plan.webhook_url == "https://ci.example.com/hooks/finetune"
    assert plan.training_plan == TrainingPlan.from_spec(loaded_spec(**FULL_SPEC_SECTIONS))


def test_a_named_architecture_takes_its_weights_file_and_family() -> None:
    spec = loaded_spec(
        base_model={
            "architecture": "MobileNetV2",
            "weights_uri": "s3://models/mobilenet_v2.h5",
            "options": {"alpha": 0.35},
        }
    )

    plan = JobPlan.from_spec(spec)

    assert plan.base_model.location == "s3://models/mobilenet_v2.h5"
    assert plan.training_plan.architecture is not None
    assert (
        plan.training_plan.architecture.describe() == "MobileNetV2(alpha=0.35, include_top=False)"
    )
    assert plan.training_plan.data.preprocessing == "mobilenet_v2"


def _without(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of ``spec`` with the key at dotted ``path`` (``schedule[1].freeze``) removed."""
    changed = copy.deepcopy(spec)
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    del node[last]
    return changed


@pytest.mark.parametrize(("key", "shape"), keys_read_by_the_plan())
def test_a_missing_key_is_named_not_filled_in(key: str, shape: str) -> None:
    spec = _without(loaded_spec(**SPEC_SHAPES[shape]), key)

    with pytest.raises(SpecKeyMissing) as missing:
        JobPlan.from_spec(spec)

    assert missing.value.key == key
    assert repr(key) in str(missing.value) and "JobSpecSchema" in str(missing.value)


def test_a_spec_that_skipped_the_schema_fails_at_once() -> None:
    with pytest.raises(SpecKeyMissing, match=re.escape("'base_model.architecture'")):
        TrainingPlan.from_spec(raw_spec())


def test_an_out_of_memory_retry_changes_a_copy() -> None:
    spec = loaded_spec()

    smaller = with_batch_size(spec, 8)

    assert TrainingPlan.from_spec(smaller).training.batch_size == 8
    assert TrainingPlan.from_spec(spec).training.batch_size == 32


def test_the_cli_adds_name_and_labels_to_a_spec_file() -> None:
    spec = raw_spec(labels={"team": "vision"})

    changed = with_name_and_labels(spec, "nightly", {"run": "42"})

    assert changed["name"] == "nightly"
    assert changed["labels"] == {"team": "vision", "run": "42"}
    assert with_name_and_labels(spec, None, {}) == spec
    assert "name" not in spec  # the file's own dict is left as it was
