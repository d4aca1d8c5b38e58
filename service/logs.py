"""Logging set-up shared by every entry point: text or JSON lines, job ids, secrets redacted.

``FINETUNE_LOG_FORMAT=json`` writes one JSON object per line (``time``, ``level``, ``logger``,
``process``, ``thread``, ``message``, ``job_id``, and ``exc_info`` where there is one). Every line
logged while a job runs carries its ``job_id``: the worker binds it with ``job_logging(job_id)``
(a context variable, so threads of other jobs are unaffected), and threads that work for a job
carry its id in their name (``heartbeat-ftj_...``), which the filter reads where no context is
bound.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from service.security.redaction import RedactingFilter

_current_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "finetune_job_id", default=None
)
_JOB_ID_IN_NAME = re.compile(r"(ftj_[0-9A-Za-z]{26})")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s%(job_tag)s: %(message)s"


@contextmanager
def job_logging(job_id: str) -> Iterator[None]:
    """Tag every log line of this thread (and its context) with ``job_id`` until the block ends."""
    token = _current_job_id.set(job_id)
    try:
        yield
    finally:
        _current_job_id.reset(token)


def current_job_id() -> str | None:
    """The job id bound to this context or named by this thread, if any."""
    bound = _current_job_id.get()
    if bound:
        return bound
    match = _JOB_ID_IN_NAME.search(threading.current_thread().name)
    return match.group(1) if match else None


class JobIdFilter(logging.Filter):
    """Adds ``job_id`` (or None) and ``job_tag`` (`` [ftj_...]`` or empty) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only annotates it."""
        job_id = getattr(record, "job_id", None) or current_job_id()
        record.job_id = job_id
        record.job_tag = f" [{job_id}]" if job_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "thread": record.threadName,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``log_format``: ``text`` or ``json`` (``FINETUNE_LOG_FORMAT``)."""
    chosen = log_format.lower()
    if chosen == "json":
        return JsonFormatter()
    if chosen != "text":
        raise ValueError(f"log_format must be text or json. Received: log_format={log_format!r}")
    return logging.Formatter(TEXT_FORMAT)


#: gunicorn's access-log line: no request headers (so never ``Authorization``), no user
#: name, no referrer; client, time, request line, status, bytes, milliseconds, user agent.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'


def configure_logging(level: str, log_format: str) -> None:
    """One line per record on stderr, at ``level``, in ``log_format``; idempotent.

    Args:
        level: A logging level name (``FINETUNE_LOG_LEVEL``).
        log_format: ``text`` or ``json`` (``FINETUNE_LOG_FORMAT``).

    The handler redacts secrets (see service.security.redaction) from every record that
    reaches it, whichever logger it came from.
    """
    root = logging.getLogger()
    if any(getattr(handler, "_finetune", False) for handler in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._finetune = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(JobIdFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
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
