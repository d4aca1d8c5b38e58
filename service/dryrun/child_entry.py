"""The dry run child's first frame: imports the trainer's inspector (and TensorFlow) only here."""

from __future__ import annotations

import os
import traceback
from typing import Any


def main(request: dict[str, Any], messages: Any) -> None:
    """Inspect one staged request and put ``{"type": "result"|"error", ...}`` on ``messages``."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from service.contract.request import TrainingRequest
        from service.trainer.inspection import inspect

        outcome = inspect(TrainingRequest(**request))
    except Exception as exc:  # the process boundary
        messages.put({"type": "error", "traceback": "".join(traceback.format_exception(exc))})
        return
    messages.put({"type": "result", **outcome})
