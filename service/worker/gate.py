"""The quality gate: a final metric that must clear a bar for the job to succeed."""

from __future__ import annotations

from service.contract.plan import Gate
from service.worker.errors import JobFailure


def check_gate(gate: Gate | None, metrics: dict[str, float]) -> None:
    """Raise JobFailure(gate_failed) where ``metrics`` miss the gate; None passes."""
    if gate is None:
        return
    name = gate.metric
    if name not in metrics:
        raise JobFailure(
            "gate_failed",
            f"gate.metric {name!r} is not among the final metrics "
            f"({', '.join(sorted(metrics))}); name one of those.",
        )
    value = metrics[name]
    low, high = gate.min, gate.max
    if low is not None and value < low:
        raise JobFailure(
            "gate_failed",
            f"Final {name} {value:.4f} is below the gate's min {low}; "
            "nothing was written to output.uri.",
        )
    if high is not None and value > high:
        raise JobFailure(
            "gate_failed",
            f"Final {name} {value:.4f} is above the gate's max {high}; "
            "nothing was written to output.uri.",
        )
