"""Thin Flask views: parse with schemas, call the job store, dump with schemas."""

from __future__ import annotations

from typing import cast

from flask import current_app

from service.context import Services


def services() -> Services:
    """The running app's shared resources."""
    return cast(Services, current_app.extensions["finetune"])
