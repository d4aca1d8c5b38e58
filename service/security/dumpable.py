"""Marking a process that holds credentials not dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``).

A process's ``/proc/<pid>/environ`` and memory are readable by every process of the same user,
its own children included, unless it is not dumpable. The API (the gunicorn master and its
workers, or ``python -m service serve``) and the worker hold storage credentials in their
environment and memory, and start children that handle client files (the trainer, the dry
run): each marks itself not dumpable before it reads a credential. The flag survives ``fork``
(gunicorn's workers inherit it from the master) and is reset by ``exec`` (a child started with
a fresh interpreter is dumpable again and must be given a clean environment instead).

Root, or any process with CAP_SYS_PTRACE, ignores the flag: the service must run as a
non-root user for it to mean anything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4


def make_undumpable(process: str) -> bool:
    """Mark this process not dumpable; False (and a warning) where that is not possible.

    Processes of the same user without CAP_SYS_PTRACE can then no longer read its
    ``/proc/<pid>/environ`` or memory, and it writes no core dumps.

    Args:
        process: What this process is (``"the worker"``, ``"the API"``), for the warning.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("could not mark %s not dumpable: errno %d", process, ctypes.get_errno())
        return False
    return True


def is_dumpable() -> bool:
    """Whether this process is dumpable (True off Linux, where the notion does not apply)."""
    if not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))
