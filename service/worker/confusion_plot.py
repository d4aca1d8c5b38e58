"""``confusion_matrix.png``: the final evaluation's counts, class names on both axes.
matplotlib only, no TensorFlow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: Most characters of a class name shown on an axis.
MAX_LABEL = 24


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Draws the matrix (rows: true class, columns: predicted) with its count in every cell.

    Args:
        matrix: K x K counts, in ``class_names`` order.
        class_names: The classes.
        path: Where the PNG goes.
        title: Above the matrix.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(matrix, dtype=np.int64)
    classes = len(class_names)
    if counts.shape != (classes, classes):
        raise ValueError(f"a {counts.shape} matrix for {classes} classes")
    side = min(4 + 0.55 * classes, 30)
    figure, axis = plt.subplots(figsize=(side + 1.5, side))
    # Each row shaded by its share of the class's examples, so small classes show too.
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    image = axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    labels = [_shown(name) for name in class_names]
    axis.set_xticks(range(classes), labels=labels, rotation=45, ha="right")
    axis.set_yticks(range(classes), labels=labels)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    font = max(5, min(12, int(120 / max(classes, 1))))
    for row in range(classes):
        for column in range(classes):
            axis.text(
                column,
                row,
                str(int(counts[row, column])),
                ha="center",
                va="center",
                fontsize=font,
                color="white" if shares[row, column] > 0.5 else "black",
            )
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    if title:
        axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _shown(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "…"
