"""One trainer per job at a time on a machine: the attempt lock.

A training child takes an exclusive ``flock`` on its job's lock file (``TrainingRequest.
lock_path``, in the job's folder of the worker's work directory) before it loads anything,
and holds it until it exits. The kernel drops the lock when the process ends, however it ends
(SIGKILL, the OOM killer, a crash), so a new attempt of the job waits exactly as long as a
trainer of an earlier attempt lives: say, one whose worker was killed and which its
parent-death signal did not end. No pid file (pids are reused), no timing guess.

The worker removes the job's folder, lock file included, only while it holds the lock itself;
a child that got the lock on a file removed meanwhile sees that its file is no longer the one
at the path, and takes the lock again on the new one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from service.contract.messages import Info

#: The lock stays held until the process exits: its descriptor is kept here, never closed.
_held: list[int] = []


def hold_attempt_lock(path: Path, send: Callable[[Info], None]) -> None:
    """Block until this process holds the exclusive lock on ``path`` (created if absent).

    Sends one Info message first where another process holds it.
    """
    told = False
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                send(
                    Info(
                        "Waiting for the trainer of an earlier attempt of this job to end "
                        "before training.",
                        {"lock": str(path)},
                    )
                )
                told = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_at(fd, path):
            _held.append(fd)
            return
        os.close(fd)  # the file was removed while this waited: lock the one there now


def _is_at(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)
