"""Keeps secrets out of everything the service writes down: logs, errors, events, records.

Two kinds of secret are replaced by ``[REDACTED]``:

- configured values: every ``AWS_*`` or ``FINETUNE_*`` environment variable whose name says
  it holds a secret (``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``FINETUNE_TOKEN``...),
  plus values registered with ``register_secret``. Values seen once are remembered for the
  life of the process, so a variable removed from the environment later stays redacted;
- secrets recognisable by their shape: ``Authorization`` header values, ``Bearer`` tokens,
  this service's ``ftk_`` tokens, AWS access key ids, and the signature and credential
  parameters of presigned URLs.

Values shorter than ``MIN_SECRET_LENGTH`` are not redacted by value (a real key is far longer,
and replacing short common words would garble the log).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8
_SECRET_NAME = re.compile(r"^(AWS|FINETUNE)_\w*(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|KEY)")
_NOT_SECRET_NAME = re.compile(r"_(FILE|PATH|DIR|URI|URL)$")

_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Authorization: ...", "'Authorization': b'...'", "authorization=...": the whole value,
    # up to its closing quote or the end of the line (a SigV4 value holds commas).
    (
        re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*b?['\"]?)[^'\"\r\n]+"),
        r"\1" + REDACTED,
    ),
    # Long enough to be a credential, not prose ("bearer token", "Bearer realm").
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*"), r"\1 " + REDACTED),
    (re.compile(r"\bftk_[A-Za-z0-9_\-]{8,}"), "ftk_" + REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    (
        re.compile(
            r"(?i)([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|"
            r"AWSAccessKeyId|x-amz-security-token|sig|token)=)[^&\s'\"]+"
        ),
        r"\1" + REDACTED,
    ),
)


def is_secret_variable(name: str) -> bool:
    """Whether the environment variable ``name`` holds a secret by this module's rule."""
    return bool(_SECRET_NAME.match(name)) and not _NOT_SECRET_NAME.search(name)


def secret_values(env: Mapping[str, str]) -> set[str]:
    """The values of the secret variables in ``env`` long enough to redact."""
    return {
        value
        for name, value in env.items()
        if is_secret_variable(name) and len(value) >= MIN_SECRET_LENGTH
    }


class Redactor:
    """Replaces known secret values and secret-shaped text with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Remember more secret values (short ones are ignored)."""
        new = {value for value in secrets if len(value) >= MIN_SECRET_LENGTH} - self._secrets
        if not new:
            return
        with self._lock:
            self._secrets |= new
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        for shape, replacement in _SHAPES:
            text = shape.sub(replacement, text)
        return text

    def redact_data(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string (keys too) redacted."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {
                self.redact(k) if isinstance(k, str) else k: self.redact_data(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.redact_data(item) for item in value]
        return value


_PROCESS_REDACTOR = Redactor()


def process_redactor() -> Redactor:
    """This process's redactor, updated with the secret variables now in the environment."""
    _PROCESS_REDACTOR.add(secret_values(os.environ))
    return _PROCESS_REDACTOR


def register_secret(value: str) -> None:
    """Redact ``value`` from now on, wherever this process writes it down."""
    _PROCESS_REDACTOR.add([value])


def redact(text: str) -> str:
    """``text`` with every secret this process knows of replaced."""
    return process_redactor().redact(text)


def redact_data(value: Any) -> Any:
    """A JSON-like value with every secret this process knows of replaced."""
    return process_redactor().redact_data(value)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the message, the traceback and the stack of each record.

    Attach it to handlers (it then sees records propagated from every logger) or to loggers
    that do not propagate (gunicorn's). It never drops a record.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; always keep it."""
        redactor = process_redactor()
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's own error path
            return True
        redacted = redactor.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact(record.stack_info)
        return True
