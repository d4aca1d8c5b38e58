"""``finetune validate``: the dry run's report as a few lines a person reads (``--json``: all).

The report (``POST /v1/jobs/validate``, see the OpenAPI document's ``DryRunReport``) lists every
layer of the model; the summary names what a reader checks before spending training time:
the model, the classes found, where the head goes and what each phase freezes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Names listed in full up to this many; longer lists show their ends and a count.
_LIST_LIMIT = 6


def summarize(report: dict[str, Any]) -> list[str]:
    """The lines of the summary, without trailing newlines."""
    lines = ["The spec fits its model and data (dry run: nothing was queued)."]
    model = report.get("model") or {}
    if model:
        lines.append(_row("model", _model(model)))
    data = report.get("data") or {}
    for split in ("train", "validation"):
        if data.get(split):
            lines.append(_row(split, _data(data[split])))
    image = report.get("image_shape")
    if image:
        lines.append(
            _row(
                "images",
                f"{_shape(image)}, preprocessing {report.get('preprocessing', '?')}, "
                f"precision {report.get('precision', '?')}",
            )
        )
    head = report.get("head")
    if head:
        lines.append(_row("head", _head(head)))
    elif report.get("output_units") is not None:
        lines.append(_row("head", f"the model's own ({report['output_units']} outputs)"))
    for phase in report.get("phases") or []:
        lines.append(_row(f"phase {int(phase.get('index', 0)) + 1}", _phase(phase)))
    lines.extend(_row("warning", warning) for warning in report.get("warnings") or [])
    lines.append("Every layer and count: finetune validate --json SPEC")
    return lines


def _row(label: str, text: str) -> str:
    return f"  {label:<11}{text}"


def _names(names: Sequence[str]) -> str:
    if len(names) <= _LIST_LIMIT:
        return ", ".join(names)
    return f"{', '.join(names[:3])}, ..., {', '.join(names[-2:])} ({len(names)})"


def _shape(shape: Sequence[Any]) -> str:
    return "x".join("?" if size is None else str(size) for size in shape)


def _count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int) else "?"


def _model(model: dict[str, Any]) -> str:
    text = f"{model.get('format', '?')}, {model.get('layer_count', '?')} layers"
    if "params" in model:
        text += f", {_count(model['params'])} params"
    if model.get("input_shape"):
        text += f", input {_shape(model['input_shape'][1:])}"
    architecture = model.get("architecture")
    if architecture:
        text += f", built as {architecture.get('built') or architecture.get('name')}"
    return text


def _data(data: dict[str, Any]) -> str:
    classes = data.get("class_names") or []
    text = f"{data.get('format', '?')}, {len(classes)} classes ({_names(classes)})"
    if data.get("sampled"):
        text += f"; sampled {data.get('examples_in_sample', '?')} examples"
    shapes = data.get("image_shapes") or []
    if shapes:
        text += f" of {', '.join(_shape(shape) for shape in shapes)}"
    return text


def _head(head: dict[str, Any]) -> str:
    text = f"cut at {head.get('cut_layer', '?')}"
    if head.get("feature_shape"):
        text += f" (features {_shape(head['feature_shape'])})"
    if head.get("layers"):
        text += f", then {', '.join(head['layers'])}"
    if head.get("output_units") is not None:
        text += f": {head['output_units']} outputs"
    return text


def _phase(phase: dict[str, Any]) -> str:
    frozen = phase.get("frozen_layers") or []
    text = (
        f"{phase.get('epochs', '?')} epochs at learning rate {phase.get('learning_rate', '?')}, "
        f"freeze {json.dumps(phase.get('freeze'))}: "
    )
    text += f"{len(frozen)} base layers frozen ({_names(frozen)})" if frozen else "nothing frozen"
    batch_norms = phase.get("frozen_batch_norms") or []
    if batch_norms:
        text += f", {len(batch_norms)} BatchNormalization in inference mode"
    if "trainable_params" in phase:
        text += (
            f"; {_count(phase['trainable_params'])} params train, "
            f"{_count(phase.get('non_trainable_params'))} do not"
        )
    return text
