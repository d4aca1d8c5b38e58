"""A job's scratch folder on this machine (``FINETUNE_WORK_DIR/<job id>/``) and its lock file.

Each attempt works in ``attempt-<n>/``; beside them, ``trainer.lock`` is the file a training
child holds an exclusive flock on while it lives (service.trainer.attempt_lock), so that a new
attempt's trainer waits for any trainer of an earlier attempt still alive on this machine.

Why a lock and not a check of pids or heartbeats: the kernel releases a flock when its holder
dies, however it dies, at that very moment; a pid can be reused and a heartbeat only tells
after a timeout. It covers every process that shares the work directory (a host's workers,
containers sharing the volume); a trainer on another machine is bounded by its worker's life
(parent-death signal) and lease instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

#: The lock file's name in a job's folder.
LOCK_FILE = "trainer.lock"


def lock_path(attempt_dir: Path) -> Path:
    """The lock file of the job whose attempt works in ``attempt_dir``."""
    return attempt_dir.parent / LOCK_FILE


def remove_attempt(attempt_dir: Path) -> None:
    """Remove the attempt's folder, and the job's folder where no trainer holds its lock.

    Where a trainer (of another attempt) still holds the lock, only ``attempt_dir`` goes, so
    that the lock it holds stays the one a later attempt will wait on.
    """
    job_dir = attempt_dir.parent
    shutil.rmtree(attempt_dir, ignore_errors=True)
    try:
        fd = os.open(job_dir / LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        shutil.rmtree(job_dir, ignore_errors=True)
        return
    except OSError as exc:
        log.warning("job folder %s left in place: %s", job_dir, exc)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.warning(
            "a trainer still holds %s; the job's folder is left in place", job_dir / LOCK_FILE
        )
        os.close(fd)
        return
    try:
        shutil.rmtree(job_dir, ignore_errors=True)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
