"""Keeping storage credentials away from the trainer process.

The trainer loads model files that clients supplied; should one of them ever manage to run
code, that code must find no credentials to the bucket. The worker does all storage I/O and
starts the trainer with an environment that holds none (``spawn`` execs a fresh interpreter,
so the child holds nothing of the worker's memory either). ``python -m service worker`` also
marks itself not dumpable, so that a process of the same user (the trainer) cannot read the
worker's own ``/proc/<pid>/environ`` or memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import resource_tracker
from multiprocessing.context import SpawnContext
from typing import Any

from service.security.redaction import is_secret_variable, process_redactor

log = logging.getLogger(__name__)

#: Held while the environment is without its secrets, so that two starts never interleave
#: (the second would otherwise "restore" an environment that has none).
_SPAWN_LOCK = threading.Lock()
_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


def is_withheld_from_child(name: str) -> bool:
    """Whether the variable ``name`` is kept out of the trainer's environment.

    Every ``AWS_*`` variable (credentials, endpoints, profiles: the trainer does no storage
    I/O) and every other variable named like a secret (``FINETUNE_TOKEN``...).
    """
    return name.startswith("AWS_") or is_secret_variable(name)


@contextmanager
def environment_without_secrets() -> Iterator[None]:
    """Remove the withheld variables from ``os.environ`` for the duration, then restore them.

    ``spawn`` execs the child with the parent's environment at that moment, and there is no
    way to hand multiprocessing another one. Deleting the variables inside the child would be
    too late: ``/proc/<pid>/environ`` keeps what the process was started with. This process's
    boto3 client read its credentials when it was made, so it works on while they are away.
    """
    process_redactor()  # remembers the secret values, to redact them while they are gone
    with _SPAWN_LOCK:
        removed = {
            name: os.environ.pop(name) for name in list(os.environ) if is_withheld_from_child(name)
        }
        try:
            yield
        finally:
            os.environ.update(removed)


@contextmanager
def spawning_without_secrets() -> Iterator[SpawnContext]:
    """A ``spawn`` context for starting children, with the withheld variables away meanwhile.

    Create the child's queues and events and start it inside the block: the queues'
    semaphores start multiprocessing's resource tracker, a helper process of its own, on first
    use, and it must be started from this environment too.
    """
    context = multiprocessing.get_context("spawn")
    with environment_without_secrets():
        resource_tracker.ensure_running()
        yield context


def start_child(
    target: Callable[..., Any], args: tuple[Any, ...], name: str
) -> tuple[multiprocessing.process.BaseProcess, Any]:
    """Spawn ``target(*args, messages)`` with no credentials in its environment.

    Returns:
        The started process and ``messages``, the queue it reports on.
    """
    with spawning_without_secrets() as context:
        messages: Any = context.Queue()
        process = context.Process(target=target, args=(*args, messages), name=name, daemon=True)
        process.start()
    return process, messages


def make_undumpable() -> bool:
    """Mark this process not dumpable (Linux ``prctl``); False where that is not possible.

    Processes of the same user without CAP_SYS_PTRACE can then no longer read its
    ``/proc/<pid>/environ`` or memory, and it writes no core dumps. Children started with
    exec (as ``spawn`` does) are dumpable again, which their own isolation does not need.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("could not mark the worker not dumpable: errno %d", ctypes.get_errno())
        return False
    return True


def is_dumpable() -> bool:
    """Whether this process is dumpable (True off Linux, where the notion does not apply)."""
    if not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))
