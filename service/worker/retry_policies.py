"""How the worker waits out unreachable storage: one named policy per kind of write.

A storage outage costs a job nothing the worker can keep: training goes on (the heartbeat
carries progress once storage is back), and each write at the end of an attempt waits it out
by one of these policies, within the lease that the heartbeat keeps alive.
"""

from __future__ import annotations

from service.retry import Policy
from service.storage.errors import StorageError, StorageUnavailable

#: The final status: kept trying for as long as it takes (the heartbeat holds the lease), from
#: 0.5 s doubling to 10 s, each wait stretched by up to 2x so workers do not retry in step.
FINAL_STATUS = Policy(
    "recording the final status",
    base_delay=0.5,
    max_delay=10.0,
    jitter=(1.0, 2.0),
    retry_on=(StorageError,),
)

#: Events still waiting when an attempt ends: 5 tries, 1 s doubling to 10 s between them.
EVENT_DRAIN = Policy(
    "writing the job's events", base_delay=1.0, max_delay=10.0, attempts=5, retry_on=(StorageError,)
)

#: The same on SIGTERM, where the grace period is better spent handing the job back: 2 tries.
EVENT_DRAIN_AT_SHUTDOWN = EVENT_DRAIN.replace(attempts=2)


def hand_back(grace_seconds: float) -> Policy:
    """Handing a job back on SIGTERM: every second until the grace period ends.

    Args:
        grace_seconds: ``FINETUNE_SHUTDOWN_GRACE_SECONDS``.
    """
    return Policy(
        "handing the job back",
        base_delay=1.0,
        multiplier=1.0,
        deadline=grace_seconds,
        retry_on=(StorageError,),
    )


#: Writing the outputs: while storage is unreachable (only then), 0.5 s doubling to 10 s, for
#: 60 s at most; then the job fails. Access denied or a missing bucket fail at once.
PUBLISH = Policy(
    "publishing the outputs",
    base_delay=0.5,
    max_delay=10.0,
    deadline=60.0,
    retry_on=(StorageUnavailable,),
)
