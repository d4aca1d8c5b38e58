"""Failures the worker records on a job, each with an error code of API.md."""

from __future__ import annotations

from typing import Any


class JobFailure(Exception):
    """Ends a job as ``failed`` with ``code`` and a ``message`` that says what to change.

    Attributes:
        field: The spec field the failure concerns (``dataset.train``), where one does: the
            dry run reports the failure under it.
        details: More fields of the job's ``error`` (a missed gate's ``evaluation`` and
            ``comparison``, so that a CI report can show what missed).
    """

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.details = dict(details or {})


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


class JobAbandoned(Exception):
    """The worker lost the job's lease (another worker holds it now); drop it quietly."""


class JobInterrupted(Exception):
    """The worker is shutting down (SIGTERM): hand the job back to the queue."""
