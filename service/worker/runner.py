"""Runs the trainer in a child process started with ``spawn`` and watches over it."""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from service.security.redaction import is_secret_variable, process_redactor
from service.trainer.request import TrainingOutcome, TrainingRequest
from service.worker import child_entry
from service.worker.errors import JobFailure

log = logging.getLogger(__name__)

#: Called with each message of the child (phase, info, epoch); returns nothing.
MessageHandler = Callable[[dict[str, Any]], None]
#: Called about once a second while the child runs; raises to stop it.
Watchdog = Callable[[], None]

_STOP_GRACE_SECONDS = 5.0
#: Held while the environment is without its secrets, so that two starts never interleave
#: (the second would otherwise "restore" an environment that has none).
_SPAWN_LOCK = threading.Lock()


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
    boto3 client has read its credentials already, so it works on while they are away.
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


def start_without_secrets(process: multiprocessing.process.BaseProcess) -> None:
    """Start a ``spawn`` process whose environment holds no storage credentials."""
    with environment_without_secrets():
        process.start()


def stop_process(process: multiprocessing.process.BaseProcess) -> None:
    """Terminate the child, then kill it where it does not exit in time."""
    if not process.is_alive():
        return
    process.terminate()
    process.join(_STOP_GRACE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


def run_training(
    request: TrainingRequest, on_message: MessageHandler, watchdog: Watchdog
) -> TrainingOutcome:
    """Train in a fresh spawned process; return its outcome or raise JobFailure.

    Exceptions raised by ``watchdog`` or ``on_message`` stop the child and propagate.
    """
    context = multiprocessing.get_context("spawn")
    messages: Any = context.Queue()
    process = context.Process(
        target=child_entry.main,
        args=(request.to_dict(), messages),
        name=f"trainer-{request.job_id}",
        daemon=True,
    )
    start_without_secrets(process)
    log.info("trainer process %s started for job %s", process.pid, request.job_id)
    try:
        while True:
            watchdog()
            try:
                message = messages.get(timeout=1.0)
            except queue.Empty:
                if not process.is_alive():
                    # A last look: the child may have put its result just before exiting.
                    try:
                        message = messages.get(timeout=1.0)
                    except queue.Empty:
                        raise _died(process.exitcode) from None
                else:
                    continue
            kind = message.get("type")
            if kind == "result":
                return TrainingOutcome.from_dict(message["outcome"])
            if kind == "error":
                log.error(
                    "job %s failed in the trainer: %s\n%s",
                    request.job_id,
                    message.get("message"),
                    message.get("traceback", ""),
                )
                raise JobFailure(message.get("code", "internal"), message["message"])
            on_message(message)
    finally:
        stop_process(process)
        messages.close()
        messages.join_thread()
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)


def _died(exitcode: int | None) -> JobFailure:
    if exitcode is not None and exitcode < 0 and -exitcode == 9:
        return JobFailure(
            "out_of_memory",
            "The training process was killed (likely out of memory). "
            "Try a smaller training.batch_size or dataset.image_size.",
        )
    return JobFailure(
        "internal", f"The training process exited unexpectedly (exit code {exitcode})."
    )
