"""What people look at rather than read, published beside the model: history.png, TensorBoard,
and the final evaluation (evaluation.json and confusion_matrix.png)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from service.contract.layout import (
    CONFUSION_MATRIX_FILE,
    EVALUATION_FILE,
    HISTORY_PLOT_FILE,
    TENSORBOARD_DIR,
)
from service.worker.confusion_plot import plot_confusion_matrix
from service.worker.history_plot import plot_history

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Import matplotlib ahead of the first job: its import takes seconds (bench/overhead.py)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
    except Exception:
        log.exception("matplotlib could not be imported; history.png will be left out")


def prepare_visuals(
    history: list[dict[str, Any]],
    outputs_dir: Path,
    title: str = "",
    *,
    evaluation: dict[str, Any] | None = None,
    comparison: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Draw history.png into ``outputs_dir``, and write the evaluation's files where there is
    one; name what to publish beside the model.

    Returns:
        Result field -> name under ``outputs_dir`` (a folder name ends with ``/``):
        ``history_plot_uri``, ``tensorboard_uri``, ``evaluation_uri`` and
        ``confusion_matrix_uri``, for those that exist. A plot that cannot be drawn is logged
        and left out; it never fails the job.
    """
    visuals: dict[str, str] = {}
    if evaluation is not None:
        report = {"evaluation": evaluation, "comparison": comparison}
        (outputs_dir / EVALUATION_FILE).write_text(json.dumps(report, indent=2, sort_keys=True))
        visuals["evaluation_uri"] = EVALUATION_FILE
        try:
            plot_confusion_matrix(
                evaluation["confusion_matrix"],
                evaluation["class_names"],
                outputs_dir / CONFUSION_MATRIX_FILE,
                f"{title}: {evaluation['split']} images" if title else evaluation["split"],
            )
            visuals["confusion_matrix_uri"] = CONFUSION_MATRIX_FILE
        except Exception:
            log.exception("could not draw %s; publishing without it", CONFUSION_MATRIX_FILE)
    try:
        plot_history(history, outputs_dir / HISTORY_PLOT_FILE, title)
        visuals["history_plot_uri"] = HISTORY_PLOT_FILE
    except Exception:
        log.exception("could not draw %s; publishing the model without it", HISTORY_PLOT_FILE)
    if (outputs_dir / TENSORBOARD_DIR).is_dir():
        visuals["tensorboard_uri"] = TENSORBOARD_DIR + "/"
    return visuals
