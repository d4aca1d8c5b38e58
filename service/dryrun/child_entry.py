"""The dry run child's first frame: imports the trainer's inspector (and TensorFlow) only here."""

from __future__ import annotations

import os
from typing import Any


def main(request: dict[str, Any], messages: Any) -> None:
    """Inspect one staged request and put ``{"type": "result"|"error", ...}`` on ``messages``."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from service.contract.messages import ChildMessage, Failed, InspectionFinished
    from service.contract.request import TrainingRequest
    from service.trainer.child import run_request

    def put(message: ChildMessage) -> None:
        if isinstance(message, InspectionFinished):
            messages.put({"type": "result", "errors": message.errors, "report": message.report})
        elif isinstance(message, Failed):
            messages.put({"type": "error", "traceback": message.traceback})

    run_request(TrainingRequest(**request), put)
