"""Job ids: ``ftj_`` plus a ULID (48-bit millisecond time, 80 random bits, Crockford base32)."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "ftj_"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_job_id(now_ms: int | None = None) -> str:
    """A new, time-ordered job id."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return PREFIX + _encode(ms, 10) + _encode(secrets.randbits(80), 16)


def is_job_id(text: str) -> bool:
    """Whether ``text`` has the form of a job id (and so is safe inside a storage key)."""
    body = text[len(PREFIX) :]
    return text.startswith(PREFIX) and len(body) == 26 and all(c in _ALPHABET for c in body)


def timestamp_ms(job_id: str) -> int:
    """The creation time encoded in a job id, in ms since the epoch."""
    value = 0
    for char in job_id[len(PREFIX) : len(PREFIX) + 10]:
        value = value * 32 + _ALPHABET.index(char)
    return value


def invert_id(text: str) -> str:
    """Map each base32 digit d after the prefix to 31 - d: reverses the sort order.

    The mapping is its own inverse: ``invert_id(invert_id(x)) == x``.
    """
    if not text.startswith(PREFIX):
        return text
    body = text[len(PREFIX) :]
    if not all(char in _ALPHABET for char in body):
        return text
    return PREFIX + "".join(_ALPHABET[31 - _ALPHABET.index(char)] for char in body)
