"""The trainer's child-process boundary: run one request, send typed messages, never raise.

A child process calls ``run_request(request, send)``: it sends progress messages
(service.contract.messages: PhaseStarted, Info, EpochEnded, CheckpointWritten) and, last,
exactly one of TrainingFinished, InspectionFinished or Failed. Importing this module does not
import TensorFlow (the parent imports it to name the child's target); TensorFlow is loaded inside
``run_request``, in the child.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from service.contract.faults import is_disk_full
from service.contract.messages import (
    ChildMessage,
    Failed,
    FinalMessage,
    TrainingFinished,
)
from service.contract.request import TrainingRequest
from service.trainer.attempt_lock import hold_attempt_lock
from service.trainer.errors import TrainerError

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = (
    "The trainer failed unexpectedly. This is not caused by the job spec as far as the service can "
    "tell; operators can find the details in the worker's log."
)
INTERRUPTED_MESSAGE = "The trainer was interrupted."
OUT_OF_MEMORY_MESSAGE = (
    "Training ran out of memory. Lower training.batch_size or dataset.image_size, or freeze more "
    "layers."
)

DISK_FULL_MESSAGE = (
    "The trainer's disk ran out of space while writing (checkpoints, TensorBoard logs or the "
    "exported model)."
)

Send = Callable[[ChildMessage], None]


def run_request(request: TrainingRequest, send: Send) -> None:
    """Runs ``request`` in its mode and sends its messages, the final one last; never raises.

    Args:
        request: What to train (``mode="train"``) or inspect (``mode="inspect"``).
        send: Receives every message in order (the child's pipe to its parent).

    Raises:
        BaseException: Only what interrupts the process (KeyboardInterrupt, SystemExit), after
            a Failed message says so; every Exception becomes a Failed message.
    """
    try:
        final = _run(request, send)
    except Exception as exc:  # the process boundary: every failure becomes one message
        _send_final(send, failure(exc))
        return
    except BaseException as exc:  # interrupted: say so, then let it end the process
        _send_final(send, Failed("internal", INTERRUPTED_MESSAGE, traceback=_traceback(exc)))
        raise
    _send_final(send, final)


def _run(request: TrainingRequest, send: Send) -> FinalMessage:
    # Here, not at the top: importing this module must not load TensorFlow.
    from service.trainer.inspection import inspect
    from service.trainer.run import train

    if request.mode == "inspect":
        return inspect(request)
    if request.lock_path is not None:
        hold_attempt_lock(Path(request.lock_path), send)
    _inject_faults(request)
    return TrainingFinished(train(request, send))


def _inject_faults(request: TrainingRequest) -> None:
    limit = request.fault_oom_above_batch
    if limit is not None and int(request.spec["training"]["batch_size"]) > limit:
        raise MemoryError(f"fault injected: batch size above {limit}")


def failure(exc: BaseException) -> Failed:
    """The Failed message for an exception from the trainer (its traceback for operators)."""
    code, message = describe_failure(exc)
    field = exc.field if isinstance(exc, TrainerError) else None
    return Failed(code, message, field=field, traceback=_traceback(exc))


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """The job error code and user message for an exception from the trainer.

    A full disk comes first: TensorFlow reports ENOSPC as a ResourceExhaustedError, and a
    trainer error may have been raised from it. The worker words the message (it knows its
    work directory and how much space is left there).
    """
    if is_disk_full(exc):
        return "disk_full", DISK_FULL_MESSAGE
    if isinstance(exc, TrainerError):
        return exc.code, exc.message
    if isinstance(exc, MemoryError) or _is_resource_exhausted(exc):
        return "out_of_memory", OUT_OF_MEMORY_MESSAGE
    return "internal", INTERNAL_MESSAGE


def _is_resource_exhausted(exc: BaseException) -> bool:
    # Only where TensorFlow is already loaded: describing a failure must not import it.
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    exhausted = getattr(errors, "ResourceExhaustedError", None)
    return exhausted is not None and isinstance(exc, exhausted)


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _send_final(send: Send, message: FinalMessage) -> None:
    try:
        send(message)
    except Exception:  # the parent is gone or the pipe broke: nobody is left to tell
        log.exception("the trainer's final message could not be sent")
