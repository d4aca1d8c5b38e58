"""Thin Flask views: parse with schemas, call the job store, dump with schemas."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import current_app

from service.context import Services
from service.jobs.dry_runs import DryRunStore

if TYPE_CHECKING:  # service.api.inputs imports this package's views' helpers
    from service.api.inputs import InputChecks


def services() -> Services:
    """The running app's shared resources."""
    return cast(Services, current_app.extensions["finetune"])


def dry_runs() -> DryRunStore:
    """Where the running app hands dry runs to the workers (``POST /v1/jobs/validate``)."""
    return cast(DryRunStore, current_app.extensions["finetune_dry_runs"])


def input_checks() -> InputChecks:
    """The running app's checks that a submitted spec's inputs are stored."""
    return cast("InputChecks", current_app.extensions["finetune_input_checks"])
