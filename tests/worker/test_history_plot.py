"""history.png from a training history: one panel per metric, phases marked."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from service.worker.history_plot import _phase_spans, metric_names, plot_history
from service.worker.visuals import prepare_visuals

HISTORY = [
    {"epoch": 1, "phase": 0, "loss": 1.2, "accuracy": 0.4, "val_loss": 1.3, "val_accuracy": 0.35},
    {"epoch": 2, "phase": 0, "loss": 0.9, "accuracy": 0.6, "val_loss": 1.0, "val_accuracy": 0.55},
    {"epoch": 3, "phase": 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.7, "val_accuracy": 0.7},
]


def test_metrics_and_phases_are_read_from_the_history() -> None:
    assert metric_names(HISTORY) == ["loss", "accuracy"]
    assert _phase_spans(HISTORY) == [(0, 1, 2), (1, 3, 3)]


def test_plot_is_a_png_with_a_panel_per_metric(tmp_path: Path) -> None:
    path = plot_history(HISTORY, tmp_path / "history.png", title="ftj_x")
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    assert width == 800 and height > 500, "two panels stacked"
    assert colours > 20, "something was drawn"


def test_empty_history_is_refused_and_visuals_skip_the_plot(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history is empty"):
        plot_history([], tmp_path / "x.png")
    (tmp_path / "tensorboard").mkdir()
    assert prepare_visuals([], tmp_path) == {"tensorboard_uri": "tensorboard/"}
    assert prepare_visuals(HISTORY, tmp_path) == {
        "history_plot_uri": "history.png",
        "tensorboard_uri": "tensorboard/",
    }
