"""Thin Flask views: parse with schemas, call the job store, dump with schemas."""

from __future__ import annotations

from typing import cast

from flask import current_app

from service.context import Services
from service.jobs.dry_runs import DryRunStore


def services() -> Services:
    """The running app's shared resources."""
    return cast(Services, current_app.extensions["finetune"])


def dry_runs() -> DryRunStore:
    """Where the running app hands dry runs to the workers (``POST /v1/jobs/validate``)."""
    return cast(DryRunStore, current_app.extensions["finetune_dry_runs"])
