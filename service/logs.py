"""Logging set-up shared by every entry point."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    """One line per record on stderr, at ``FINETUNE_LOG_LEVEL`` (default INFO); idempotent."""
    root = logging.getLogger()
    if any(getattr(handler, "_finetune", False) for handler in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._finetune = True  # type: ignore[attr-defined]
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(os.environ.get("FINETUNE_LOG_LEVEL", "INFO").upper())
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
