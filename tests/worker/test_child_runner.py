"""The child runner's supervision: a child that dies, a deadline, a watchdog (real children).

The children here are given no request, so they wait for one; the test then ends them, or
lets the runner do it.
"""

from __future__ import annotations

import signal

import pytest

from service.worker.child_runner import KILLED_MESSAGE, TrainerProcess
from service.worker.errors import JobFailure
from service.worker.faults import OomKillCounter
from tests.helpers.cgroups import memory_cgroup
from tests.helpers.children import is_alive, trainer_pids

MiB = 1024**2


def _ignore(message: object) -> None:
    """No progress is expected."""


@pytest.mark.parametrize(
    ("signum", "code", "says"),
    [
        (signal.SIGSEGV, "trainer_crashed", "crashed with SIGSEGV while it started"),
        (signal.SIGABRT, "trainer_crashed", "crashed with SIGABRT while it started"),
        (signal.SIGKILL, "killed", "cannot tell whether the out-of-memory killer"),
    ],
)
def test_a_child_that_dies_is_reported_by_its_signal(
    signum: signal.Signals, code: str, says: str
) -> None:
    # No cgroup file counts OOM kills here (OomKillCounter([])): a SIGKILL is not out of memory.
    child = TrainerProcess(oom_kills=OomKillCounter([]))
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


def test_a_child_the_kernel_kills_for_memory_is_out_of_memory() -> None:
    """A real OOM kill: the child moved into a memory cgroup of 80 MiB while it imports
    TensorFlow (hundreds of MB); the cgroup's count rises, so its SIGKILL is memory."""
    with memory_cgroup() as group:
        group.limit(80 * MiB)
        child = TrainerProcess(oom_kills=OomKillCounter([group.oom_file]))
        group.add(child.pid)

        with pytest.raises(JobFailure) as failed:
            child.supervise(_ignore, lambda: None)

        assert child.process.returncode == -signal.SIGKILL
        assert group.oom_kills() >= 1
    assert failed.value.code == "out_of_memory"
    assert "out-of-memory killer" in failed.value.message


def test_a_sigkill_from_outside_the_cgroup_does_not_explain_is_killed() -> None:
    """The same cgroup, no limit: a SIGKILL from outside leaves its count as it was."""
    with memory_cgroup() as group:
        child = TrainerProcess(oom_kills=OomKillCounter([group.oom_file]))
        group.add(child.pid)
        child.process.send_signal(signal.SIGKILL)

        with pytest.raises(JobFailure) as failed:
            child.supervise(_ignore, lambda: None)

        assert group.oom_kills() == 0
    assert (failed.value.code, failed.value.message) == ("killed", KILLED_MESSAGE)
    assert "not by the out-of-memory killer" in KILLED_MESSAGE
