"""Time as the job store writes it: RFC 3339 in UTC, second precision plus milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """``2026-11-27T21:04:05.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(text: str) -> datetime:
    """The inverse of isoformat."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now_iso() -> str:
    """isoformat(utcnow())."""
    return isoformat(utcnow())
