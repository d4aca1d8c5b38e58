"""Runs the trainer in a child process started with ``spawn`` and watches over it."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import time
from collections.abc import Callable
from typing import Any

from service.trainer.request import TrainingOutcome, TrainingRequest
from service.worker import child_entry
from service.worker.errors import JobFailure
from service.worker.isolation import start_child

log = logging.getLogger(__name__)

#: Called with each message of the child (phase, info, epoch); returns nothing.
MessageHandler = Callable[[dict[str, Any]], None]
#: Called about once a second while the child runs; raises to stop it.
Watchdog = Callable[[], None]

_STOP_GRACE_SECONDS = 5.0


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

    The process starts without storage credentials in its environment (see isolation.py).

    Exceptions raised by ``watchdog`` or ``on_message`` stop the child and propagate.
    """
    process, messages = start_child(
        child_entry.main, (request.to_dict(),), name=f"trainer-{request.job_id}"
    )
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
