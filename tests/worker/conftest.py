"""Every worker test leaves no trainer child of this process behind.

A child one test leaves running is counted by the next test that looks for its own trainer
(tests/helpers/children.trainer_pids): a leak shows up in the test that made it, not later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.helpers.children import trainer_pids

#: A stopped child takes a moment to be reaped (its supervisor's thread waits on it).
_REAP_SECONDS = 15.0


@pytest.fixture(autouse=True)
def no_trainer_child_left() -> Iterator[None]:
    before = set(trainer_pids())
    yield
    deadline = time.monotonic() + _REAP_SECONDS
    left = set(trainer_pids()) - before
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = set(trainer_pids()) - before
    assert not left, f"trainer children left running after the test: {sorted(left)}"
