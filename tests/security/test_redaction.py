"""Secret redaction: configured values and secret-shaped text never reach a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn.config import Config as GunicornConfig

from service.logs import RedactingGunicornLogger
from service.security.redaction import (
    REDACTED,
    RedactingFilter,
    Redactor,
    is_secret_variable,
    redact,
    redact_data,
)

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY-redaction-test"
TOKEN = "ftk_" + "Q" * 43


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose handler carries the filter, as configure_logging sets it up."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.removeHandler(handler)


def test_configured_secrets_are_redacted_from_messages_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("credentials are %s and %r", SECRET_KEY, {"key": SECRET_KEY})
    try:
        raise RuntimeError(f"signing with {SECRET_KEY} failed")
    except RuntimeError:
        logger.exception("storage failed")
    logger.info("stack", stack_info=True)
    text = stream.getvalue()
    assert SECRET_KEY not in text
    assert text.count(REDACTED) >= 3
    assert "RuntimeError: signing with [REDACTED] failed" in text


def test_secret_shapes_are_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    presigned = (
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261127%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Signature=0123456789abcdef0123456789abcdef&X-Amz-Security-Token=FwoGZXIvYXdz"
    )
    logger.info("headers %s", {"Authorization": f"Bearer {TOKEN}", "Accept": "*/*"})
    logger.info(
        "raw header Authorization: AWS4-HMAC-SHA256 Credential=AKIAX/2026/s3, "
        "SignedHeaders=host, Signature=feedface0123"
    )
    logger.info("client sent %s", TOKEN)
    logger.info("fetching %s", presigned)
    logger.info("key id AKIAIOSFODNN7EXAMPLE in use")
    text = stream.getvalue()
    secrets = (TOKEN, "AKIAIOSFODNN7EXAMPLE", "0123456789abcdef", "FwoGZXIvYXdz", "feedface")
    for secret in secrets:
        assert secret not in text, secret
    assert "'Accept': '*/*'" in text
    assert "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&" in text
    assert "X-Amz-Signature=[REDACTED]" in text


def test_prose_and_short_values_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # moto's default: too short to hunt
    text = "send a bearer token; Bearer realm=finetune; testing the Authorization header"
    assert redact(text) == text


def test_data_is_redacted_recursively(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINETUNE_WEBHOOK_SECRET", "hook-secret-value-1234")
    data = {"error": {"message": "bad hook-secret-value-1234"}, "n": 3, "l": [TOKEN, 1.5]}
    assert redact_data(data) == {
        "error": {"message": f"bad {REDACTED}"},
        "n": 3,
        "l": ["ftk_" + REDACTED, 1.5],
    }


def test_secrets_stay_redacted_after_leaving_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value-xyz")
    assert redact("t=session-token-value-xyz") == f"t={REDACTED}"
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    assert redact("t=session-token-value-xyz") == f"t={REDACTED}"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("AWS_SESSION_TOKEN", True),
        ("FINETUNE_TOKEN", True),
        ("FINETUNE_WEBHOOK_SECRET", True),
        ("AWS_SHARED_CREDENTIALS_FILE", False),
        ("AWS_ENDPOINT_URL_S3", False),
        ("FINETUNE_AUTH_FILE", False),
        ("FINETUNE_STATE_URI", False),
        ("HOME", False),
    ],
)
def test_which_variables_hold_secrets(name: str, secret: bool) -> None:
    assert is_secret_variable(name) is secret


def test_longest_secret_wins() -> None:
    redactor = Redactor(["abcdefgh", "abcdefghijkl"])
    assert redactor.redact("xabcdefghijklx") == f"x{REDACTED}x"


def test_gunicorn_logs_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    config = GunicornConfig()
    config.set("errorlog", str(tmp_path / "error.log"))
    config.set("accesslog", str(tmp_path / "access.log"))
    config.set("access_log_format", "%(r)s %({authorization}i)s")
    logger = RedactingGunicornLogger(config)
    logger.error("boot failed with %s", SECRET_KEY)
    logger.access_log.info("%s", f"Authorization: Bearer {TOKEN}")
    for handler in [*logger.error_log.handlers, *logger.access_log.handlers]:
        handler.flush()
    text = (tmp_path / "error.log").read_text() + (tmp_path / "access.log").read_text()
    assert "boot failed with" in text and "Authorization:" in text
    assert SECRET_KEY not in text and TOKEN not in text
