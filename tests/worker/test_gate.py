"""The gate on final metrics, the evaluation and the comparison with a champion (plain data)."""

from __future__ import annotations

from typing import Any

import pytest

from service.contract.plan import Gate
from service.worker.errors import JobFailure
from service.worker.gate import check_gate


def _evaluation(accuracy: float, recalls: dict[str, float], split: str = "test") -> dict[str, Any]:
    return {
        "split": split,
        "metrics": {
            "loss": 1 - accuracy,
            "accuracy": accuracy,
            "top_k_accuracy": 1.0,
            "macro_f1": accuracy,
        },
        "per_class": {
            name: {"precision": r, "recall": r, "f1": r, "support": 10}
            for name, r in recalls.items()
        },
    }


def _champion(accuracy: float, recalls: dict[str, float]) -> dict[str, Any]:
    return {"model_uri": "s3://models/v6/model.keras", **_evaluation(accuracy, recalls)}


def _gate(metric: str = "test_accuracy", **bounds: float) -> Gate:
    values = {"min": None, "max": None, "min_delta": None, "max_class_drop": None, **bounds}
    return Gate(metric, values["min"], values["max"], values["min_delta"], values["max_class_drop"])


def test_test_metrics_are_gated_by_min() -> None:
    evaluation = _evaluation(0.7, {"a": 0.7, "b": 0.7})

    check_gate(_gate(min=0.6), {"accuracy": 0.9}, evaluation)
    with pytest.raises(JobFailure) as caught:
        check_gate(_gate(min=0.8), {"accuracy": 0.9}, evaluation)
    assert caught.value.code == "gate_failed"
    assert "test_accuracy 0.7000" in str(caught.value) and "0.8" in str(caught.value)


def test_min_delta_compares_with_the_champion() -> None:
    new = _evaluation(0.80, {"a": 0.8, "b": 0.8})
    champion = _champion(0.82, {"a": 0.82, "b": 0.82})

    check_gate(_gate(min_delta=-0.05), {}, new, champion)
    with pytest.raises(JobFailure) as caught:
        check_gate(_gate(min_delta=-0.005), {}, new, champion)
    message = str(caught.value)
    assert "test_accuracy 0.8000" in message and "champion's 0.8200" in message
    assert "-0.0200" in message and "s3://models/v6/model.keras" in message


def test_min_delta_on_a_loss_counts_a_lower_loss_as_better() -> None:
    new = _evaluation(0.9, {"a": 0.9, "b": 0.9})  # loss 0.1
    champion = _champion(0.8, {"a": 0.8, "b": 0.8})  # loss 0.2

    check_gate(_gate("test_loss", min_delta=0.05), {}, new, champion)


def test_a_class_whose_recall_drops_blocks_a_model_that_is_better_overall() -> None:
    new = _evaluation(0.90, {"a": 1.0, "b": 0.80})
    champion = _champion(0.85, {"a": 0.75, "b": 0.95})

    check_gate(_gate(min_delta=0.0), {}, new, champion)
    with pytest.raises(JobFailure) as caught:
        check_gate(_gate(min_delta=0.0, max_class_drop=0.05), {}, new, champion)
    message = str(caught.value)
    assert "Class 'b'" in message and "0.8000" in message and "0.9500" in message
    assert "max_class_drop 0.05" in message
