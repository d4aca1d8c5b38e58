"""Why a dry run gave no verdict (the spec's own problems are field errors, not these)."""

from __future__ import annotations


class DryRunError(Exception):
    """A dry run that could not finish."""


class DryRunBusy(DryRunError):
    """As many dry runs as allowed are running; retry shortly."""


class DryRunTimeout(DryRunError):
    """Staging and inspecting took longer than the configured timeout."""


class DryRunFailed(DryRunError):
    """The inspecting child failed unexpectedly (its traceback is in the log)."""
