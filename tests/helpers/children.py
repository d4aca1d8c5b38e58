"""Targets for spawned child processes in tests (importable by the child)."""

from __future__ import annotations

import time
from typing import Any


def idle(seconds: float, messages: Any) -> None:
    """Say hello on ``messages``, then wait: a child whose environment a test can read."""
    messages.put({"type": "ready"})
    time.sleep(seconds)
