"""The child process's first frame.

The worker starts this with the ``spawn`` method; it imports the trainer (and so TensorFlow)
only here, inside the child, so the worker process itself never loads TensorFlow.
"""

from __future__ import annotations

import os
from typing import Any


def main(request: dict[str, Any], messages: Any) -> None:
    """Run one training request, reporting on ``messages`` (a multiprocessing queue)."""
    # The worker does all storage I/O and starts this process without credentials in its
    # environment (runner.start_without_secrets); this is a second line of defence only.
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    from service.trainer.child import run_in_child

    run_in_child(request, messages)
