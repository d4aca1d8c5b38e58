"""Each default of the spec is stated once, in the schema: the plans state none of their own."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
from marshmallow import Schema, fields
from marshmallow.constants import missing

from schemas import JobSpecSchema
from service.contract import plan
from tests.contract.spec_reads import keys_read_by_the_plan

PLAN_CLASSES = [
    cls
    for _, cls in inspect.getmembers(plan, inspect.isclass)
    if dataclasses.is_dataclass(cls) and cls.__module__ == plan.__name__
]


def test_the_plan_module_has_its_dataclasses() -> None:
    names = {cls.__name__ for cls in PLAN_CLASSES}

    assert {"TrainingPlan", "JobPlan", "HeadSettings", "TrainingSettings", "Phase"} <= names


@pytest.mark.parametrize("cls", PLAN_CLASSES, ids=lambda cls: cls.__name__)
def test_no_plan_field_has_a_default(cls: type) -> None:
    defaulted = [
        field.name
        for field in dataclasses.fields(cls)
        if field.default is not dataclasses.MISSING
        or field.default_factory is not dataclasses.MISSING
    ]

    assert not defaulted, f"{cls.__name__} states defaults for {defaulted}; the schema has them"


def _schema_field(schema: Schema, path: str) -> fields.Field:
    """The schema's field at a dotted spec path (``schedule[1].freeze``), or KeyError."""
    parts = re.sub(r"\[\d+\]", "", path).split(".")
    field: fields.Field | None = None
    for part in parts:
        field = schema.fields[part]
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested):
            nested = inner.schema
            assert isinstance(nested, Schema)
            schema = nested
    assert field is not None
    return field


@pytest.mark.parametrize(("key", "shape"), keys_read_by_the_plan())
def test_every_key_the_plan_reads_is_a_schema_field(key: str, shape: str) -> None:
    field = _schema_field(JobSpecSchema(), key)

    # Present after loading: required, or filled in by the schema's own default.
    assert field.required or field.load_default is not missing, (
        f"{key} is neither required nor given a default by the schema"
    )


def test_the_plan_reads_the_keys_it_converts() -> None:
    keys = {key for key, _ in keys_read_by_the_plan()}

    for expected in (
        "training.batch_size",
        "training.learning_rate",
        "training.early_stopping.patience",
        "training.augmentation.zoom",
        "head.cut_at",
        "schedule[1].freeze",
        "limits.max_attempts",
        "notify.webhook_url",
        "gate.min",
        "dataset.preprocessing",
        "training.epochs",
        "base_model.options",
        "training.lr_schedule.warmup_epochs",
        "schedule[1].lr_schedule.min_learning_rate",
        "training.label_smoothing",
        "training.weight_decay",
        "training.momentum",
        "training.nesterov",
        "training.clipnorm",
        "training.early_stopping.min_delta",
        "head.l2",
        "training.feature_cache",
        "resources.gpus",
    ):
        assert expected in keys
