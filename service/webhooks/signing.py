"""HMAC-SHA256 signatures of webhook bodies.

The signature covers ``f"{timestamp}.{body}"``: a receiver checks it with the shared secret
and refuses old timestamps, so a captured delivery cannot be replayed later.

    X-Finetune-Timestamp: 1764277445
    X-Finetune-Signature: sha256=<hex of HMAC-SHA256(secret, b"1764277445." + body)>
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Finetune-Timestamp"
SIGNATURE_HEADER = "X-Finetune-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex>``."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``headers`` carry a valid, fresh signature of ``body`` (for receivers and tests)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        timestamp = int(lowered[TIMESTAMP_HEADER.lower()])
        given = lowered[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), given)
