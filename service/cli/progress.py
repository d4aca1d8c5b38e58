"""Showing a job's progress: a live bar on a terminal, plain lines in a CI log."""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from typing import Any, Protocol, TextIO

_KEY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def describe_metrics(metrics: dict[str, Any], limit: int = 4) -> str:
    """``loss 0.4120 accuracy 0.8710 ...``: the usual ones first, at most ``limit``."""
    names = [n for n in _KEY_METRICS if n in metrics]
    names += sorted(n for n in metrics if n not in names)
    parts = []
    for name in names[:limit]:
        value = metrics[name]
        parts.append(f"{name} {value:.4f}" if isinstance(value, int | float) else f"{name} {value}")
    return " ".join(parts)


def describe_progress(job: dict[str, Any]) -> str:
    """``running training epoch 3/10 (30.0%) loss 0.41 ...`` for one line."""
    progress = job.get("progress") or {}
    status, phase = str(job.get("status", "?")), str(progress.get("phase", "?"))
    # A queued job's phase is "queued" too: say it once.
    parts = [status] if phase == status else [status, phase]
    if progress.get("epochs"):
        parts.append(f"epoch {progress.get('epoch', 0)}/{progress['epochs']}")
    parts.append(f"({float(progress.get('percent') or 0):.1f}%)")
    metrics = describe_metrics(job.get("metrics") or {})
    if metrics:
        parts.append(metrics)
    return " ".join(parts)


def describe_outcome(job: dict[str, Any]) -> str:
    """One line on how a final job ended."""
    status = job.get("status")
    if status == "succeeded":
        result = job.get("result") or {}
        metrics = describe_metrics(result.get("metrics") or job.get("metrics") or {})
        where = result.get("saved_model_uri", "")
        return f"{job['id']} succeeded: {metrics}; SavedModel at {where}".rstrip()
    error = job.get("error") or {}
    if status == "failed":
        return f"{job['id']} failed ({error.get('code', '?')}): {error.get('message', '')}"
    if status == "cancelled":
        return f"{job['id']} was cancelled."
    return f"{job['id']} is {status}: {describe_progress(job)}"


class ProgressView(Protocol):
    """What waiting reports to."""

    def update(self, job: dict[str, Any]) -> None:
        """The job as last read."""

    def event(self, event: dict[str, Any]) -> None:
        """A new event of the job."""

    def note(self, message: str) -> None:
        """Something the user should see (a retry, a warning)."""

    def close(self) -> None:
        """Waiting is over."""


def event_clock_time(event: dict[str, Any]) -> str:
    """``HH:MM:SS`` (local time) of when the event happened; now where it carries no time."""
    try:
        moment = datetime.fromisoformat(str(event["time"]))
    except (KeyError, ValueError):
        return time.strftime("%H:%M:%S")
    return moment.astimezone().strftime("%H:%M:%S")


class PlainLines:
    """One line per event and per change of status, phase or epoch: fit for CI logs.

    A progress line is stamped when it was read; an event line with the event's own time, so
    the events of a job that finished long ago show when they happened.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: tuple[Any, ...] | None = None

    def _print(self, text: str, stamp: str | None = None) -> None:
        print(f"{stamp or time.strftime('%H:%M:%S')} {text}", file=self._stream, flush=True)

    def update(self, job: dict[str, Any]) -> None:
        """Print the progress where it changed."""
        progress = job.get("progress") or {}
        key = (job.get("status"), progress.get("phase"), progress.get("epoch"))
        if key != self._last:
            self._last = key
            self._print(f"{job['id']} {describe_progress(job)}")

    def event(self, event: dict[str, Any]) -> None:
        """Print the event's message, stamped with its time."""
        self._print(f"  [{event.get('type')}] {event.get('message', '')}", event_clock_time(event))

    def note(self, message: str) -> None:
        """Print ``message``."""
        self._print(message)

    def close(self) -> None:
        """Nothing to tidy."""


class LiveBar:
    """A progress bar redrawn in place on a terminal; events are printed above it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._line = ""

    def _draw(self) -> None:
        self._stream.write("\r\x1b[2K" + self._line)
        self._stream.flush()

    def _above(self, text: str) -> None:
        self._stream.write("\r\x1b[2K" + text + "\n")
        self._draw()

    def update(self, job: dict[str, Any]) -> None:
        """Redraw the bar from the job."""
        progress = job.get("progress") or {}
        percent = max(0.0, min(100.0, float(progress.get("percent") or 0)))
        width = max(10, min(30, shutil.get_terminal_size((80, 20)).columns - 70))
        filled = round(width * percent / 100)
        bar = "█" * filled + "░" * (width - filled)
        epoch = (
            f" epoch {progress.get('epoch', 0)}/{progress['epochs']}"
            if progress.get("epochs")
            else ""
        )
        metrics = describe_metrics(job.get("metrics") or {}, limit=2)
        line = (
            f"{job.get('status')} {progress.get('phase', '?'):<11} [{bar}] {percent:5.1f}%"
            f"{epoch} {metrics}"
        )
        columns = shutil.get_terminal_size((120, 20)).columns
        self._line = line[: max(columns - 1, 20)]
        self._draw()

    def event(self, event: dict[str, Any]) -> None:
        """Info and failure messages go above the bar; epochs show in the bar itself."""
        if event.get("type") not in ("epoch", "phase"):
            self._above(f"  [{event.get('type')}] {event.get('message', '')}")

    def note(self, message: str) -> None:
        """Print ``message`` above the bar."""
        self._above(message)

    def close(self) -> None:
        """End the bar's line."""
        self._stream.write("\n")
        self._stream.flush()


def make_view(stream: TextIO, quiet: bool = False) -> ProgressView:
    """A live bar where ``stream`` is a terminal, plain lines elsewhere, nothing if ``quiet``."""
    if quiet:
        return _Silent()
    return LiveBar(stream) if stream.isatty() else PlainLines(stream)


class _Silent:
    def update(self, job: dict[str, Any]) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass
