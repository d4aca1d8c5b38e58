"""Retrying an operation by a named policy: how many tries, for how long, how far apart, on what.

Every retry loop of the service is one ``Policy`` (its numbers stated once, where it is
defined) run by ``Policy.call``, or, where the caller schedules the next try itself (the
webhook sender's queue), asked for ``Policy.next_delay``. Clock, sleep and randomness can be
injected, so tests never sleep for real.

This module imports nothing of the service: every layer may use it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], None]
Uniform = Callable[[float, float], float]
#: Called before each wait with the error, the tries made so far and the wait in seconds.
RetryHook = Callable[[BaseException, int, float], None]


@dataclass(frozen=True)
class Policy:
    """How one kind of operation is retried.

    The wait before retry ``n`` (1 for the first) is ``base_delay * multiplier ** (n - 1)``,
    at most ``max_delay``, times a factor drawn uniformly from ``jitter``. Where the error
    asks for a wait of its own (``hint``, e.g. an HTTP Retry-After), that wait is used,
    still at most ``max_delay``.

    Attributes:
        name: What is retried, for logs and messages.
        base_delay: Seconds before the first retry.
        multiplier: Each further wait is the previous one times this (1: a fixed wait).
        max_delay: The longest wait, before jitter.
        attempts: Tries in all, the first included; None: no limit.
        deadline: Seconds from the first try; no wait runs past it, so the last try starts
            at the deadline at the latest; None: no limit.
        jitter: The range of the factor each wait is multiplied by: ``(1, 1)`` none,
            ``(0, 1)`` full jitter; a spread keeps many processes from retrying in step.
        retry_on: The errors worth another try; any other passes through at once.
        retryable: A further test of an error of ``retry_on``; None: every one is.
        hint: The wait an error asks for, or None; None: errors ask for none.
    """

    name: str
    base_delay: float
    multiplier: float = 2.0
    max_delay: float = math.inf
    attempts: int | None = None
    deadline: float | None = None
    jitter: tuple[float, float] = (1.0, 1.0)
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retryable: Callable[[Any], bool] | None = None
    hint: Callable[[Any], float | None] | None = None

    def __post_init__(self) -> None:
        low, high = self.jitter
        problems = [
            (self.base_delay < 0, f"base_delay={self.base_delay}"),
            (self.multiplier < 1, f"multiplier={self.multiplier}"),
            (self.max_delay < self.base_delay, f"max_delay={self.max_delay}"),
            (self.attempts is not None and self.attempts < 1, f"attempts={self.attempts}"),
            (self.deadline is not None and self.deadline < 0, f"deadline={self.deadline}"),
            (not 0 <= low <= high, f"jitter={self.jitter}"),
        ]
        for bad, received in problems:
            if bad:
                raise ValueError(
                    f"Retry policy {self.name!r}: delays must be at least 0, the multiplier at "
                    "least 1, max_delay at least base_delay, attempts at least 1 and jitter a "
                    f"range 0 <= low <= high. Received: {received}"
                )

    def replace(self, **changes: Any) -> Policy:
        """This policy with ``changes`` (e.g. a deadline that comes from a setting)."""
        return replace(self, **changes)

    def backoff(self, retry: int) -> float:
        """The wait before retry ``retry`` (1 for the first), before jitter."""
        if self.multiplier == 1:
            return min(self.base_delay, self.max_delay)
        # Past this exponent the product is beyond any max_delay worth stating.
        exponent = min(retry - 1, 64)
        return min(self.base_delay * self.multiplier**exponent, self.max_delay)

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another try at all."""
        if not isinstance(error, self.retry_on):
            return False
        return self.retryable is None or bool(self.retryable(error))

    def next_delay(
        self,
        tries: int,
        error: BaseException,
        elapsed: float,
        uniform: Uniform = random.uniform,
    ) -> float | None:
        """The wait before the next try, or None where the policy gives up.

        Args:
            tries: Tries made so far (1 after the first).
            error: What the last try raised.
            elapsed: Seconds since the first try started.
            uniform: Draws the jitter factor (``random.uniform``).
        """
        if not self.is_retryable(error):
            return None
        if self.attempts is not None and tries >= self.attempts:
            return None
        asked = self.hint(error) if self.hint is not None else None
        if asked is not None:
            wait = min(max(asked, 0.0), self.max_delay)
        else:
            wait = self.backoff(tries) * uniform(*self.jitter)
        if self.deadline is not None:
            left = self.deadline - elapsed
            if left <= 0:
                return None
            wait = min(wait, left)
        return wait

    def call(
        self,
        operation: Callable[[], T],
        *,
        on_retry: RetryHook | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        uniform: Uniform = random.uniform,
    ) -> T:
        """Run ``operation`` until it returns, retrying as the policy says.

        Raises:
            BaseException: The last error, as it was, where the policy gives up (out of tries,
                past the deadline) or the error is not retryable.
        """
        started = clock()
        tries = 0
        while True:
            tries += 1
            try:
                return operation()
            except self.retry_on as error:
                wait = self.next_delay(tries, error, clock() - started, uniform)
                if wait is None:
                    raise
                if on_retry is not None:
                    on_retry(error, tries, wait)
                sleep(wait)
