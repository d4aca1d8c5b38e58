"""dataset.test, compare_with and the extended gate in the schema: the rules that join fields."""

from __future__ import annotations

from typing import Any

from schemas import JobSpecSchema

BASE: dict[str, Any] = {
    "base_model": {"uri": "s3://models/base.keras"},
    "dataset": {"train": "s3://data/train/"},
    "output": {"uri": "s3://models/v7/"},
}


def _errors(**changes: Any) -> dict[str, Any]:
    spec = {**BASE, **changes}
    return dict(JobSpecSchema().validate(spec))


def test_a_full_refresh_spec_loads() -> None:
    spec = {
        **BASE,
        "dataset": {"train": "s3://data/train/", "test": "s3://data/holdout/"},
        "compare_with": {"alias_uri": "s3://models/production.json"},
        "gate": {
            "metric": "test_accuracy",
            "min": 0.8,
            "min_delta": -0.005,
            "max_class_drop": 0.05,
        },
    }
    loaded = JobSpecSchema().load(spec)

    assert loaded["dataset"]["test"] == "s3://data/holdout/"
    assert loaded["compare_with"] == {"alias_uri": "s3://models/production.json", "model_uri": None}
    assert loaded["gate"]["max_class_drop"] == 0.05


def test_a_test_metric_needs_dataset_test() -> None:
    errors = _errors(gate={"metric": "test_accuracy", "min": 0.8})

    assert "dataset.test" in errors["gate"]["metric"][0]


def test_min_delta_and_max_class_drop_need_compare_with() -> None:
    dataset = {"train": "s3://data/train/", "test": "s3://data/holdout/"}
    for name, value in (("min_delta", 0.0), ("max_class_drop", 0.1)):
        errors = _errors(dataset=dataset, gate={"metric": "test_accuracy", name: value})
        assert "compare_with" in errors["gate"][name][0], errors


def test_compare_with_takes_exactly_one_uri() -> None:
    both = _errors(compare_with={"model_uri": "s3://m/a.keras", "alias_uri": "s3://m/p.json"})
    neither = _errors(compare_with={})

    assert "exactly one" in both["compare_with"]["model_uri"][0]
    assert "exactly one" in neither["compare_with"]["model_uri"][0]
