"""What ``finetune submit --wait`` / ``finetune wait`` write for CI: a markdown summary
(``--report``, fit for GitHub's job summary, ``$GITHUB_STEP_SUMMARY``) and a JUnit XML file
(``--junit``) in which the gate is a test case that fails where the job missed it.

Both are built from the job record alone: its status, ``result`` (or, for a missed gate,
``error``) with the final evaluation and the comparison with the champion."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

#: The metrics of an evaluation, in the order the report shows them.
METRICS = ("loss", "accuracy", "top_k_accuracy", "macro_f1")
#: Result fields that are links to outputs, with what the report calls them.
OUTPUT_LINKS = (
    ("saved_model_uri", "SavedModel"),
    ("keras_uri", "Keras model"),
    ("manifest_uri", "manifest"),
    ("evaluation_uri", "evaluation.json"),
    ("confusion_matrix_uri", "confusion matrix"),
    ("history_plot_uri", "training history"),
)


def _evaluated(job: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The job's evaluation and comparison: from its result, or from a missed gate's error."""
    source = job.get("result") or job.get("error") or {}
    return source.get("evaluation"), source.get("comparison")


def gate_verdict(job: dict[str, Any]) -> tuple[str, str]:
    """(``passed`` | ``failed`` | ``none`` | ``not reached``, a sentence)."""
    gate = (job.get("spec") or {}).get("gate")
    error = job.get("error") or {}
    if error.get("code") == "gate_failed":
        return "failed", str(error.get("message", ""))
    if gate is None:
        return "none", "The job has no gate."
    if job.get("status") == "succeeded":
        return "passed", f"The job passed its gate on {gate.get('metric')}."
    reason = error.get("message") or f"the job is {job.get('status')}"
    return "not reached", f"The gate was not reached: {reason}"


def markdown_report(job: dict[str, Any]) -> str:
    """The markdown summary of a job (see the module's doc)."""
    lines = [f"## Fine-tuning job `{job.get('id')}`: {job.get('status')}", ""]
    if job.get("name"):
        lines += [f"Name: {job['name']}", ""]
    verdict, sentence = gate_verdict(job)
    mark = {"passed": "✅", "failed": "❌"}.get(verdict, "-")
    lines += [f"**Gate: {verdict}** {mark} {sentence}", ""]
    error = job.get("error")
    if error and error.get("code") != "gate_failed":
        lines += [f"**Error `{error.get('code')}`**: {error.get('message')}", ""]
    evaluation, comparison = _evaluated(job)
    if evaluation is not None:
        lines += _metric_table(evaluation, comparison)
        lines += _class_table(evaluation, comparison)
    metrics = job.get("metrics") or {}
    if metrics:
        shown = ", ".join(f"{name} {_number(value)}" for name, value in sorted(metrics.items()))
        lines += [f"Last training epoch: {shown}", ""]
    result = job.get("result") or {}
    links = [(label, result[field]) for field, label in OUTPUT_LINKS if result.get(field)]
    if links:
        lines += ["### Outputs", ""]
        lines += [f"- {label}: `{uri}`" for label, uri in links]
        promotion = result.get("promotion")
        if promotion:
            lines.append(
                f"- promoted to `{promotion.get('alias_uri')}` (version {promotion.get('version')})"
            )
        lines.append("")
    return "\n".join(lines)


def _metric_table(evaluation: dict[str, Any], comparison: dict[str, Any] | None) -> list[str]:
    split, examples = evaluation["split"], evaluation["examples"]
    lines = [f"### Evaluation on {examples} {split} images", ""]
    if comparison is None:
        lines += ["| metric | new |", "|---|---:|"]
        lines += [f"| {m} | {_number(evaluation['metrics'][m])} |" for m in METRICS]
    else:
        lines += [f"Champion: `{comparison['model_uri']}`", ""]
        lines += ["| metric | new | champion | delta |", "|---|---:|---:|---:|"]
        lines += [
            f"| {m} | {_number(evaluation['metrics'][m])} | "
            f"{_number(comparison['metrics'][m])} | {_signed(comparison['delta'][m])} |"
            for m in METRICS
        ]
    return [*lines, ""]


def _class_table(evaluation: dict[str, Any], comparison: dict[str, Any] | None) -> list[str]:
    lines = ["### Per class", ""]
    if comparison is None:
        lines += ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    else:
        lines += [
            "| class | precision | recall | F1 | support | champion recall | recall delta |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
    for name, figures in evaluation["per_class"].items():
        row = (
            f"| {_cell(name)} | {_number(figures['precision'])} | {_number(figures['recall'])} "
            f"| {_number(figures['f1'])} | {figures['support']} |"
        )
        if comparison is not None:
            theirs = comparison["per_class"][name]["recall"]
            row += f" {_number(theirs)} | {_signed(figures['recall'] - theirs)} |"
        lines.append(row)
    return [*lines, ""]


def junit_report(job: dict[str, Any]) -> str:
    """JUnit XML: one suite, the gate as a test case (failure where the job missed it, error
    where the job failed otherwise or did not finish)."""
    verdict, sentence = gate_verdict(job)
    suite = ElementTree.Element(
        "testsuite", name="finetune", tests="1", failures="0", errors="0", skipped="0"
    )
    case = ElementTree.SubElement(
        suite, "testcase", classname=f"finetune.{job.get('id')}", name="gate"
    )
    if verdict == "failed":
        suite.set("failures", "1")
        failure = ElementTree.SubElement(case, "failure", message=sentence, type="gate_failed")
        failure.text = sentence
    elif verdict == "not reached":
        suite.set("errors", "1")
        code = (job.get("error") or {}).get("code") or str(job.get("status"))
        failure = ElementTree.SubElement(case, "error", message=sentence, type=code)
        failure.text = sentence
    elif verdict == "none":
        suite.set("skipped", "1")
        ElementTree.SubElement(case, "skipped", message=sentence)
    evaluation, comparison = _evaluated(job)
    if evaluation is not None:
        out = ElementTree.SubElement(case, "system-out")
        shown = [f"{m}={evaluation['metrics'][m]:.4f}" for m in METRICS]
        if comparison is not None:
            shown += [f"delta_{m}={comparison['delta'][m]:+.4f}" for m in METRICS]
        out.text = f"{evaluation['split']}: " + " ".join(shown)
    ElementTree.indent(suite)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else str(value)


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")
