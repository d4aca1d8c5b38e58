"""Thin Flask views: parse with schemas, call the job store, dump with schemas."""

from __future__ import annotations

from typing import cast

from flask import current_app

from service.context import Services
from service.dryrun import DryRunner


def services() -> Services:
    """The running app's shared resources."""
    return cast(Services, current_app.extensions["finetune"])


def dry_runner() -> DryRunner:
    """The running app's dry runner (``POST /v1/jobs/validate``)."""
    return cast(DryRunner, current_app.extensions["finetune_dry_run"])
