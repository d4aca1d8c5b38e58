"""``manifest.json``: what went into a job and what came out, written last."""

from __future__ import annotations

import json
import platform
from typing import Any

from service import __version__
from service.contract.request import TrainingOutcome
from service.jobs.record import JobRecord
from service.security.redaction import redact_data
from service.worker.staging import StagedInputs


def build_manifest(
    record: JobRecord,
    inputs: StagedInputs,
    outcome: TrainingOutcome,
    outputs: dict[str, str],
    timings: dict[str, float],
) -> bytes:
    """The manifest's bytes (JSON, UTF-8), with any secret this process knows of redacted.

    It records: the job id and attempt; the full spec with defaults; the base model's URI,
    sha256 and format (and the Keras that wrote it); per dataset (``dataset.train``,
    ``dataset.validation``, ``dataset.test``) its URI, format and files (key, size, ETag;
    sha256 for a single-object dataset such as an archive or an .npz); the class names in
    label order; the exported model's input (raw 0-255 float32 pixels); the metric history
    per epoch with its phase; the final metrics; the final evaluation and the comparison with
    the champion (also in ``evaluation.json``, listed with ``confusion_matrix.png`` among the
    outputs); per phase its epochs, learning rate, freeze rule, seconds, learning-rate
    schedule and the settings read back from the compiled Keras objects (optimizer and its
    options, schedule in steps, loss and label smoothing, early stopping, head L2;
    phases.PhaseSummary.outcome); the timings of every step; and the versions of TensorFlow,
    Keras and the service.
    """
    formats = {
        "dataset.train": inputs.train_format,
        "dataset.validation": inputs.validation_format or inputs.train_format,
        "dataset.test": inputs.test_format or inputs.train_format,
    }
    manifest: dict[str, Any] = {
        "job_id": record.id,
        "attempt": record.attempt,
        "spec": record.spec,
        "inputs": {
            "base_model": {
                "uri": inputs.base_model_uri,
                "sha256": inputs.base_model_sha256,
                **outcome.base_model,
            },
            "dataset": {
                name: {"uri": inputs.dataset_uris[name], "format": formats[name], "files": files}
                for name, files in inputs.dataset_files.items()
            },
        },
        "class_names": outcome.class_names,
        "input": {
            "name": "image",
            "shape": [None, *outcome.input_shape],
            "dtype": "float32",
            "pixels": "raw 0-255; preprocessing is inside the model",
        },
        "input_shape": outcome.input_shape,
        "precision": outcome.precision,
        "metrics": outcome.metrics,
        "evaluation": outcome.evaluation,
        "comparison": outcome.comparison,
        "history": outcome.history,
        "phases": outcome.phases,
        "outputs": outputs,
        "timings": {**outcome.timings, **timings},
        "versions": {
            **outcome.versions,
            "service": __version__,
            "python": platform.python_version(),
        },
    }
    return json.dumps(redact_data(manifest), indent=2, sort_keys=True).encode()
