"""What people look at rather than read, published beside the model: history.png, TensorBoard."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from service.contract.layout import HISTORY_PLOT_FILE, TENSORBOARD_DIR
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
    history: list[dict[str, Any]], outputs_dir: Path, title: str = ""
) -> dict[str, str]:
    """Draw history.png into ``outputs_dir``; name what to publish beside the model.

    Returns:
        Result field -> name under ``outputs_dir`` (a folder name ends with ``/``):
        ``history_plot_uri`` and ``tensorboard_uri``, for those that exist. A plot that cannot
        be drawn is logged and left out; it never fails the job.
    """
    visuals: dict[str, str] = {}
    try:
        plot_history(history, outputs_dir / HISTORY_PLOT_FILE, title)
        visuals["history_plot_uri"] = HISTORY_PLOT_FILE
    except Exception:
        log.exception("could not draw %s; publishing the model without it", HISTORY_PLOT_FILE)
    if (outputs_dir / TENSORBOARD_DIR).is_dir():
        visuals["tensorboard_uri"] = TENSORBOARD_DIR + "/"
    return visuals
