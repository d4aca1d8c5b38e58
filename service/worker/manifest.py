"""``manifest.json``: what went into a job and what came out, written last."""

from __future__ import annotations

import json
import platform
from typing import Any

from service import __version__
from service.jobs.record import JobRecord
from service.security.redaction import redact_data
from service.trainer.request import TrainingOutcome
from service.worker.staging import StagedInputs


def build_manifest(
    record: JobRecord,
    inputs: StagedInputs,
    outcome: TrainingOutcome,
    outputs: dict[str, str],
    timings: dict[str, float],
) -> bytes:
    """The manifest's bytes (JSON, UTF-8), with any secret this process knows of redacted."""
    manifest: dict[str, Any] = {
        "job_id": record.id,
        "attempt": record.attempt,
        "spec": record.spec,
        "inputs": {
            "base_model": {
                "uri": record.spec["base_model"]["uri"],
                "sha256": inputs.base_model_sha256,
            },
            "dataset": inputs.dataset_files,
        },
        "class_names": outcome.class_names,
        "input_shape": outcome.input_shape,
        "metrics": outcome.metrics,
        "history": outcome.history,
        "outputs": outputs,
        "timings": {**outcome.timings, **timings},
        "versions": {
            **outcome.versions,
            "service": __version__,
            "python": platform.python_version(),
        },
    }
    return json.dumps(redact_data(manifest), indent=2, sort_keys=True).encode()
