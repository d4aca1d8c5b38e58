"""``history.png``: loss and metrics per epoch, phases marked. matplotlib only, no TensorFlow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

_NOT_METRICS = frozenset({"epoch", "phase"})


def metric_names(history: Sequence[dict[str, Any]]) -> list[str]:
    """The training metrics logged (``val_`` ones are drawn with them), loss first."""
    names: list[str] = []
    for entry in history:
        for name in entry:
            base = name.removeprefix("val_")
            if name not in _NOT_METRICS and base not in names:
                names.append(base)
    return sorted(names, key=lambda name: (name != "loss", name))


def plot_history(history: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Draws one panel per metric (training and validation), shading each phase.

    Args:
        history: Entries ``{"epoch" (1-based), "phase" (0-based), <metric>: float, ...}``.
        path: Where the PNG goes.
        title: Above the panels (the job's name or id).

    Raises:
        ValueError: The history is empty.
    """
    if not history:
        raise ValueError("history is empty: there is nothing to plot.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = metric_names(history)
    epochs = [int(entry["epoch"]) for entry in history]
    figure, axes = plt.subplots(
        len(names), 1, figsize=(8, 2.6 * len(names) + 0.6), sharex=True, squeeze=False
    )
    phases = _phase_spans(history)
    for axis, name in zip(axes[:, 0], names, strict=True):
        for key, style in ((name, "-o"), (f"val_{name}", "--s")):
            points = [(e["epoch"], e[key]) for e in history if key in e]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, style, markersize=3, label=key)
        for index, (phase, first, last) in enumerate(phases):
            if index % 2:
                axis.axvspan(first - 0.5, last + 0.5, color="0.92", zorder=0)
            if index:
                axis.axvline(first - 0.5, color="0.5", linestyle=":", linewidth=1)
            axis.text(
                (first + last) / 2,
                1.0,
                f"phase {phase + 1}",
                transform=axis.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                color="0.35",
            )
        axis.set_ylabel(name)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    axes[-1, 0].set_xlabel("epoch")
    axes[-1, 0].set_xticks(epochs if len(epochs) <= 30 else axes[-1, 0].get_xticks())
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _phase_spans(history: Sequence[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """``(phase, first epoch, last epoch)`` for each run of one phase."""
    spans: list[tuple[int, int, int]] = []
    for entry in history:
        phase, epoch = int(entry.get("phase", 0)), int(entry["epoch"])
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], epoch)
        else:
            spans.append((phase, epoch, epoch))
    return spans
