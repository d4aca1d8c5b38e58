"""The trainer's child-process boundary: run one request, report on a queue, never raise.

The worker starts ``run_in_child`` with the ``spawn`` method. Importing this module does not
import TensorFlow (the worker pickles a reference to ``run_in_child``, so it imports this module
too); TensorFlow is loaded inside the function, in the child.

Messages put on the queue, all plain dicts:

- ``{"type": "phase", "phase": "loading" | "training" | "exporting"}``
- ``{"type": "info", "message": str, "data": dict}``
- ``{"type": "epoch", "epoch": int, "epochs": int, "phase_index": int, "metrics": {str: float}}``
- last, exactly one of ``{"type": "result", "outcome": TrainingOutcome.to_dict()}`` or
  ``{"type": "error", "code": str, "message": str, "traceback": str}``.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Protocol

from service.contract.request import TrainingRequest
from service.trainer.errors import TrainerError

INTERNAL_MESSAGE = (
    "The trainer failed unexpectedly. This is not caused by the job spec as far as the service can "
    "tell; operators can find the details in the worker's log."
)
OUT_OF_MEMORY_MESSAGE = (
    "Training ran out of memory. Lower training.batch_size or dataset.image_size, or freeze more "
    "layers."
)


class EventQueue(Protocol):
    """What run_in_child needs of a multiprocessing queue."""

    def put(self, obj: Any) -> None:
        """Sends one message."""


def run_in_child(request: dict[str, Any], events: EventQueue) -> None:
    """Runs one training request and reports on ``events``; the target of a spawned process.

    Args:
        request: ``TrainingRequest.to_dict()``.
        events: A ``multiprocessing`` queue (of the spawn context) for the messages above.
    """
    # TensorFlow's C++ start-up chatter is not for the job's log; errors still get through.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from service.trainer.run import train

        _inject_faults(request)
        outcome = train(TrainingRequest(**request), events.put)
    except Exception as exc:  # the process boundary: every failure becomes one message
        code, message = describe_failure(exc)
        events.put(_error(code, message, exc))
        return
    except BaseException as exc:  # interrupted: say so, then let it end the process
        events.put(_error("internal", "The trainer was interrupted.", exc))
        raise
    events.put({"type": "result", "outcome": outcome.to_dict()})


#: Test-only fault injection: a batch size above this value fails as out of memory. No device
#: here can be made to run out of memory on demand, and the worker's retry-with-half-the-batch
#: logic must be tested through the real child process; unset in every real deployment.
FAULT_OOM_ABOVE_BATCH = "FINETUNE_FAULT_OOM_ABOVE_BATCH"


def _inject_faults(request: dict[str, Any]) -> None:
    limit = os.environ.get(FAULT_OOM_ABOVE_BATCH)
    if limit and int(request["spec"]["training"]["batch_size"]) > int(limit):
        raise MemoryError(f"fault injected by {FAULT_OOM_ABOVE_BATCH}={limit}")


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """The job error code and user message for an exception from the trainer."""
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


def _error(code: str, message: str, exc: BaseException) -> dict[str, Any]:
    return {
        "type": "error",
        "code": code,
        "message": message,
        "traceback": "".join(traceback.format_exception(exc)),
    }
