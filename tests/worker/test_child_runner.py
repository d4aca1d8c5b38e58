"""The child runner's supervision: a child that dies, a deadline, a watchdog (real children).

The children here are given no request, so they wait for one; the test then ends them, or
lets the runner do it.
"""

from __future__ import annotations

import signal

import pytest

from service.worker.child_runner import TrainerProcess
from service.worker.errors import JobFailure
from tests.helpers.children import is_alive, trainer_pids


def _ignore(message: object) -> None:
    """No progress is expected."""


@pytest.mark.parametrize(
    ("signum", "code", "says"),
    [
        (signal.SIGSEGV, "internal", "(signal SIGSEGV)"),
        (signal.SIGKILL, "out_of_memory", "killed (likely out of memory)"),
    ],
)
def test_a_child_that_dies_is_reported_by_its_signal(
    signum: signal.Signals, code: str, says: str
) -> None:
    child = TrainerProcess()
    child.process.send_signal(signum)

    with pytest.raises(JobFailure) as failed:
        child.supervise(_ignore, lambda: None)

    assert failed.value.code == code and says in failed.value.message
    assert not is_alive(child.pid)


def test_a_child_past_its_deadline_is_stopped_with_a_timeout() -> None:
    child = TrainerProcess()

    with pytest.raises(JobFailure) as failed:
        child.supervise(_ignore, lambda: None, deadline=0.0)

    assert failed.value.code == "timeout"
    assert not is_alive(child.pid) and trainer_pids() == []


def test_what_the_watchdog_raises_stops_the_child_and_propagates() -> None:
    child = TrainerProcess()

    def watchdog() -> None:
        raise KeyboardInterrupt  # stands for JobCancelled, JobAbandoned...

    with pytest.raises(KeyboardInterrupt):
        child.supervise(_ignore, watchdog)

    assert not is_alive(child.pid)
