"""The child process's first frame.

The worker starts this with the ``spawn`` method; it imports the trainer (and so TensorFlow)
only here, inside the child, so the worker process itself never loads TensorFlow.

A child runs exactly one request. It may be started ahead of time (a warm trainer, see
runner.TrainerPool): it then imports TensorFlow and the trainer while it waits, so that a job
handed to it starts training without paying for that import.
"""

from __future__ import annotations

import contextlib
import os
import queue
from typing import Any

#: How often a waiting child checks that the worker that started it is still there.
_PARENT_CHECK_SECONDS = 2.0


def serve_one(requests: Any, messages: Any, ready: Any) -> None:
    """Warm up, wait for one request on ``requests``, run it reporting on ``messages``, return.

    Args:
        requests: A multiprocessing queue; the worker puts one ``TrainingRequest.to_dict()``.
        messages: A multiprocessing queue for the trainer's messages (see trainer.child).
        ready: A multiprocessing event, set once TensorFlow and the trainer are imported.
    """
    _drop_credentials()
    parent = os.getppid()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A failed import is not fatal here: run_in_child imports it again and reports the failure
    # as the job's error.
    with contextlib.suppress(Exception):
        from service.trainer import run  # noqa: F401  (loads TensorFlow and Keras)
    ready.set()
    while True:
        try:
            request = requests.get(timeout=_PARENT_CHECK_SECONDS)
            break
        except queue.Empty:
            if os.getppid() != parent:
                return  # the worker is gone; nobody will ever send a request
    if request is None:
        return  # the worker let this child go unused
    from service.trainer.child import run_in_child

    run_in_child(request, messages)


def _drop_credentials() -> None:
    # The worker starts this process without credentials in its environment
    # (isolation.spawning_without_secrets); this is a second line of defence only.
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
