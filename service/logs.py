"""Logging set-up shared by every entry point; every line passes through secret redaction."""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from service.security.redaction import RedactingFilter

#: gunicorn's access-log line: no request headers (so never ``Authorization``), no user
#: name, no referrer; client, time, request line, status, bytes, milliseconds, user agent.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'


def configure_logging() -> None:
    """One line per record on stderr, at ``FINETUNE_LOG_LEVEL`` (default INFO); idempotent.

    The handler redacts secrets (see service.security.redaction) from every record that
    reaches it, whichever logger it came from.
    """
    root = logging.getLogger()
    if any(getattr(handler, "_finetune", False) for handler in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._finetune = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(os.environ.get("FINETUNE_LOG_LEVEL", "INFO").upper())
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RedactingGunicornLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger with secret redaction on its error and access logs.

    gunicorn's loggers do not propagate to the root logger, so they get a filter of their own
    (``logger_class`` in deploy/gunicorn.conf.py and the embedded server).
    """

    def setup(self, cfg: Any) -> None:
        """Set gunicorn's handlers up, then add the redaction filter to both loggers."""
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            if not any(isinstance(item, RedactingFilter) for item in logger.filters):
                logger.addFilter(RedactingFilter())
