"""The quality gate: bars the new model must clear for the job to succeed and publish.

``gate.metric`` names ``<m>`` (the last training epoch's, as ``result.metrics``), ``val_<m>``
(validation, also from the last epoch) or ``test_<m>`` (the final evaluation on
``dataset.test``). ``min``/``max`` bound its value; ``min_delta`` bounds its improvement over
the champion (``compare_with``) in the final evaluation, and ``max_class_drop`` how far any
class's recall may fall below the champion's there.
"""

from __future__ import annotations

from typing import Any

from service.contract.plan import Gate
from service.worker.errors import JobFailure

NOTHING_WRITTEN = "nothing was written to output.uri"
#: The prefixes of a gate metric that names the final evaluation's split.
EVALUATION_PREFIXES = {"test": "test_", "validation": "val_"}


def gate_metrics(metrics: dict[str, float], evaluation: dict[str, Any] | None) -> dict[str, float]:
    """What ``gate.metric`` may name: the final metrics, and ``test_<m>`` of an evaluation on
    dataset.test."""
    named = dict(metrics)
    if evaluation is not None and evaluation["split"] == "test":
        named.update({f"test_{name}": value for name, value in evaluation["metrics"].items()})
    return named


def check_gate(
    gate: Gate | None,
    metrics: dict[str, float],
    evaluation: dict[str, Any] | None = None,
    comparison: dict[str, Any] | None = None,
) -> None:
    """Raise JobFailure(gate_failed) where the job misses the gate; None passes.

    Args:
        gate: The spec's gate.
        metrics: The final training metrics (``result.metrics``).
        evaluation: The final evaluation (``result.evaluation``), or None.
        comparison: The champion's evaluation (``result.comparison``), or None.
    """
    if gate is None:
        return
    name = gate.metric
    named = gate_metrics(metrics, evaluation)
    if gate.min is not None or gate.max is not None:
        if name not in named:
            raise JobFailure(
                "gate_failed",
                f"gate.metric {name!r} is not among the final metrics "
                f"({', '.join(sorted(named))}); name one of those.",
            )
        value = named[name]
        if gate.min is not None and value < gate.min:
            raise JobFailure(
                "gate_failed",
                f"Final {name} {value:.4f} is below the gate's min {gate.min}; {NOTHING_WRITTEN}.",
            )
        if gate.max is not None and value > gate.max:
            raise JobFailure(
                "gate_failed",
                f"Final {name} {value:.4f} is above the gate's max {gate.max}; {NOTHING_WRITTEN}.",
            )
    if gate.min_delta is not None:
        _check_delta(gate, gate.min_delta, evaluation, comparison)
    if gate.max_class_drop is not None:
        _check_class_drop(gate.max_class_drop, evaluation, comparison)


def _compared(
    evaluation: dict[str, Any] | None, comparison: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    if evaluation is None or comparison is None:
        raise JobFailure(
            "gate_failed",
            "The gate compares with the champion, but the job made no comparison (it had no "
            f"test set and no validation images to evaluate on); {NOTHING_WRITTEN}.",
        )
    return evaluation, comparison


def _check_delta(
    gate: Gate,
    min_delta: float,
    evaluation: dict[str, Any] | None,
    comparison: dict[str, Any] | None,
) -> None:
    new, champion = _compared(evaluation, comparison)
    prefix = EVALUATION_PREFIXES[new["split"]]
    metric = gate.metric.removeprefix(prefix)
    if not gate.metric.startswith(prefix) or metric not in new["metrics"]:
        raise JobFailure(
            "gate_failed",
            f"gate.min_delta compares the final evaluation on the {new['split']} images: "
            f"gate.metric must be {prefix}<m> with <m> one of "
            f"{', '.join(new['metrics'])}, not {gate.metric!r}; {NOTHING_WRITTEN}.",
        )
    ours, theirs = new["metrics"][metric], champion["metrics"][metric]
    # Lower is better for a loss: its improvement is the champion's minus the new model's.
    gain = theirs - ours if metric.endswith("loss") else ours - theirs
    if gain < min_delta:
        raise JobFailure(
            "gate_failed",
            f"{gate.metric} {ours:.4f} against the champion's {theirs:.4f} "
            f"({comparison_uri(champion)}): a change of {gain:+.4f}, below the gate's "
            f"min_delta {min_delta}; {NOTHING_WRITTEN}.",
        )


def _check_class_drop(
    max_drop: float, evaluation: dict[str, Any] | None, comparison: dict[str, Any] | None
) -> None:
    new, champion = _compared(evaluation, comparison)
    drops = {
        name: champion["per_class"][name]["recall"] - figures["recall"]
        for name, figures in new["per_class"].items()
    }
    worst = max(drops, key=lambda name: drops[name])
    if drops[worst] > max_drop:
        ours = new["per_class"][worst]["recall"]
        theirs = champion["per_class"][worst]["recall"]
        raise JobFailure(
            "gate_failed",
            f"Class {worst!r}: recall {ours:.4f} against the champion's {theirs:.4f} "
            f"({comparison_uri(champion)}) on the {new['split']} images, a drop of "
            f"{drops[worst]:.4f}, more than the gate's max_class_drop {max_drop}; "
            f"{NOTHING_WRITTEN}.",
        )


def comparison_uri(comparison: dict[str, Any]) -> str:
    """The champion's URI as a comparison names it."""
    return str(comparison.get("model_uri", "the champion"))
