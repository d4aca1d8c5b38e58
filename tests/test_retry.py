"""The retry helper, on a fake clock: nothing here sleeps for real."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from service.retry import Policy


class Outage(Exception):
    """A failure worth another try."""


class Refused(Exception):
    """A failure that another try cannot mend."""


class FakeTime:
    """A clock that only ``sleep`` moves, recording every wait."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _failing(
    times: int, error: Exception, clock: FakeTime
) -> tuple[Callable[[], str], list[float]]:
    """An operation that raises ``error`` ``times`` times, then returns; and its try times."""
    started: list[float] = []

    def operation() -> str:
        started.append(clock.now)
        if len(started) <= times:
            raise error
        return "done"

    return operation, started


def _run(policy: Policy, operation: Callable[[], str], fake: FakeTime) -> str:
    return policy.call(operation, clock=fake.clock, sleep=fake.sleep)


def test_waits_grow_by_the_multiplier_up_to_the_cap() -> None:
    fake = FakeTime()
    operation, _ = _failing(5, Outage("down"), fake)
    policy = Policy("test", base_delay=0.5, max_delay=2.0, retry_on=(Outage,))
    assert _run(policy, operation, fake) == "done"
    assert fake.waits == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_a_fixed_wait_with_a_multiplier_of_one() -> None:
    fake = FakeTime()
    operation, _ = _failing(3, Outage("down"), fake)
    _run(Policy("test", base_delay=1.0, multiplier=1.0, retry_on=(Outage,)), operation, fake)
    assert fake.waits == [1.0, 1.0, 1.0]


def test_out_of_attempts_the_last_error_is_raised_as_it_was() -> None:
    fake = FakeTime()
    error = Outage("still down")
    operation, started = _failing(10, error, fake)
    policy = Policy("test", base_delay=1.0, attempts=3, retry_on=(Outage,))
    with pytest.raises(Outage) as caught:
        _run(policy, operation, fake)
    assert caught.value is error
    assert len(started) == 3 and fake.waits == [1.0, 2.0]


def test_the_deadline_is_respected_and_the_last_try_starts_at_it() -> None:
    fake = FakeTime()
    operation, started = _failing(100, Outage("down"), fake)
    policy = Policy("test", base_delay=1.0, deadline=5.0, retry_on=(Outage,))
    with pytest.raises(Outage):
        _run(policy, operation, fake)
    # Tries at 0, 1 and 3 s; the wait of 4 s is cut to the 2 s left; none after the deadline.
    assert [at - 100.0 for at in started] == [0.0, 1.0, 3.0, 5.0]
    assert sum(fake.waits) == 5.0


def test_the_time_an_operation_takes_counts_against_the_deadline() -> None:
    fake = FakeTime()

    def slow() -> str:
        fake.now += 4.0  # each try takes 4 s before it fails
        raise Outage("timed out")

    with pytest.raises(Outage):
        _run(Policy("test", base_delay=1.0, deadline=6.0, retry_on=(Outage,)), slow, fake)
    assert fake.waits == [1.0]  # after the second try 9 s have passed: no third


@pytest.mark.parametrize("factor", [0.0, 1.0])
def test_jitter_draws_each_wait_within_its_range(factor: float) -> None:
    policy = Policy("test", base_delay=2.0, jitter=(1.0, 1.5), retry_on=(Outage,))
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return low + factor * (high - low)

    waits = [policy.next_delay(n, Outage(), 0.0, uniform) for n in (1, 2, 3)]
    assert draws == [(1.0, 1.5)] * 3
    assert waits == [
        2.0 * (1.0 + 0.5 * factor),
        4.0 * (1.0 + 0.5 * factor),
        8.0 * (1.0 + 0.5 * factor),
    ]


def test_jitter_stays_within_its_bounds_over_many_draws() -> None:
    policy = Policy("test", base_delay=0.01, max_delay=0.25, jitter=(0.0, 1.0), retry_on=(Outage,))
    generator = random.Random(7)
    for retry in range(1, 60):
        wait = policy.next_delay(retry, Outage(), 0.0, generator.uniform)
        assert wait is not None and 0.0 <= wait <= policy.backoff(retry) <= 0.25


def test_errors_that_are_not_retryable_pass_through_at_once() -> None:
    fake = FakeTime()
    operation, started = _failing(1, Refused("no"), fake)
    with pytest.raises(Refused):
        _run(Policy("test", base_delay=1.0, retry_on=(Outage,)), operation, fake)
    assert len(started) == 1 and fake.waits == []


def test_the_retryable_test_refines_the_error_types() -> None:
    fake = FakeTime()
    operation, started = _failing(1, Outage("permanent"), fake)
    policy = Policy(
        "test", base_delay=1.0, retry_on=(Outage,), retryable=lambda e: e.args[0] != "permanent"
    )
    with pytest.raises(Outage):
        _run(policy, operation, fake)
    assert len(started) == 1 and fake.waits == []


def test_a_wait_the_error_asks_for_is_used_up_to_the_cap() -> None:
    class Busy(Exception):
        def __init__(self, retry_after: float) -> None:
            super().__init__(retry_after)
            self.retry_after = retry_after

    policy = Policy(
        "test", base_delay=0.5, max_delay=10.0, retry_on=(Busy,), hint=lambda e: e.retry_after
    )
    assert policy.next_delay(1, Busy(3.0), 0.0) == 3.0
    assert policy.next_delay(1, Busy(60.0), 0.0) == 10.0


def test_each_retry_is_reported_before_its_wait() -> None:
    fake = FakeTime()
    operation, _ = _failing(2, Outage("down"), fake)
    seen: list[tuple[str, int, float]] = []
    Policy("test", base_delay=1.0, retry_on=(Outage,)).call(
        operation,
        on_retry=lambda error, tries, wait: seen.append((str(error), tries, wait)),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    assert seen == [("down", 1, 1.0), ("down", 2, 2.0)]


@pytest.mark.parametrize(
    ("changes", "received"),
    [
        ({"base_delay": -1.0}, "base_delay=-1.0"),
        ({"attempts": 0}, "attempts=0"),
        ({"jitter": (1.0, 0.5)}, "jitter=(1.0, 0.5)"),
        ({"multiplier": 0.5}, "multiplier=0.5"),
    ],
)
def test_a_policy_out_of_range_is_refused_with_the_value(
    changes: dict[str, object], received: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"Received: {received}")):
        Policy("test", base_delay=1.0).replace(**changes)


def test_no_module_sleeps_between_tries_by_itself() -> None:
    """Retry loops go through a Policy: only retry.py sleeps, and two pollers that wait for news.

    The CLI's ``events -f`` and the API's wait for a dry run's verdict poll at a fixed interval
    until an answer or a deadline; neither retries a failed call.
    """
    service = Path(__file__).resolve().parents[1] / "service"
    sleeping = {
        str(source.relative_to(service))
        for source in service.rglob("*.py")
        if "time.sleep(" in source.read_text()
    }
    assert sleeping <= {"retry.py", "cli/main.py", "jobs/dry_runs.py"}, sleeping
