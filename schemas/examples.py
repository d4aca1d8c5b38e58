"""Examples for the OpenAPI document: a job spec, jobs, and error answers. Plain data."""

from __future__ import annotations

from typing import Any

JOB_SPEC_EXAMPLE: dict[str, Any] = {
    "name": "flowers-refresh",
    "labels": {"team": "vision", "ci_run": "4812"},
    "base_model": {"uri": "s3://models/flowers/v6/model.keras"},
    "dataset": {
        "train": "s3://data/flowers/train/",
        "validation_split": 0.2,
        "image_size": [224, 224],
        "preprocessing": "rescale",
    },
    "head": {"cut_at": -2, "pooling": "avg", "hidden_units": [128], "dropout": 0.2},
    "freeze": "base",
    "training": {
        "epochs": 10,
        "batch_size": 32,
        "optimizer": "adam",
        "learning_rate": 0.0001,
        "early_stopping": {"monitor": "val_loss", "patience": 3},
        "seed": 1234,
        "lr_schedule": {"type": "cosine", "warmup_epochs": 1, "min_learning_rate": 0.000001},
        "label_smoothing": 0.1,
    },
    "schedule": [
        {"epochs": 3, "learning_rate": 0.001, "freeze": "base"},
        {"epochs": 5, "learning_rate": 0.00001, "freeze": {"first_n": 100}},
    ],
    "output": {"uri": "s3://models/flowers/v7/"},
    "gate": {"metric": "val_accuracy", "min": 0.8},
    "limits": {"max_runtime_seconds": 3600},
    "notify": {"webhook_url": "https://ci.example.com/hooks/finetune"},
}

_JOB_ID = "ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ"

JOB_RUNNING_EXAMPLE: dict[str, Any] = {
    "id": _JOB_ID,
    "status": "running",
    "created_at": "2026-11-27T21:04:05Z",
    "started_at": "2026-11-27T21:04:07Z",
    "finished_at": None,
    "updated_at": "2026-11-27T21:06:41Z",
    "name": "flowers-refresh",
    "labels": {"team": "vision", "ci_run": "4812"},
    "spec": JOB_SPEC_EXAMPLE,
    "attempt": 1,
    "progress": {"phase": "training", "epoch": 3, "epochs": 8, "percent": 37.5},
    "metrics": {"loss": 0.41, "accuracy": 0.87, "val_loss": 0.52, "val_accuracy": 0.84},
    "result": None,
    "error": None,
    "cancel_requested": False,
    "lease": {
        "worker": "finetune-worker-7c9d-12-a1b2c3",
        "heartbeat_at": "2026-11-27T21:06:41Z",
        "expires_at": "2026-11-27T21:07:41Z",
    },
}

JOB_SUCCEEDED_EXAMPLE: dict[str, Any] = {
    **JOB_RUNNING_EXAMPLE,
    "status": "succeeded",
    "finished_at": "2026-11-27T21:12:30Z",
    "updated_at": "2026-11-27T21:12:30Z",
    "progress": {"phase": "done", "epoch": 8, "epochs": 8, "percent": 100.0},
    "metrics": {"loss": 0.21, "accuracy": 0.93, "val_loss": 0.31, "val_accuracy": 0.9},
    "lease": None,
    "result": {
        "saved_model_uri": "s3://models/flowers/v7/saved_model/",
        "keras_uri": "s3://models/flowers/v7/model.keras",
        "manifest_uri": "s3://models/flowers/v7/manifest.json",
        "history_plot_uri": "s3://models/flowers/v7/history.png",
        "tensorboard_uri": "s3://models/flowers/v7/tensorboard/",
        "metrics": {"loss": 0.21, "accuracy": 0.93, "val_loss": 0.31, "val_accuracy": 0.9},
        "history": [
            {"epoch": 1, "phase": 0, "loss": 0.9, "accuracy": 0.66, "val_loss": 0.7},
            {"epoch": 2, "phase": 0, "loss": 0.6, "accuracy": 0.8, "val_loss": 0.5},
        ],
        "class_names": ["daisy", "dandelion", "roses", "sunflowers", "tulips"],
    },
}

JOB_GATE_FAILED_EXAMPLE: dict[str, Any] = {
    **JOB_SUCCEEDED_EXAMPLE,
    "status": "failed",
    "progress": {"phase": "done", "epoch": 8, "epochs": 8, "percent": 100.0},
    "result": None,
    "error": {
        "code": "gate_failed",
        "message": "val_accuracy 0.7412 is below gate.min 0.8; nothing was written to "
        "output.uri. Train longer, unfreeze more layers, or lower the gate.",
    },
}

JOB_LIST_EXAMPLE: dict[str, Any] = {
    "jobs": [JOB_RUNNING_EXAMPLE],
    "next_cursor": "am9icy9pbmRleC8...",
}

VALIDATION_ERROR_EXAMPLE: dict[str, Any] = {
    "code": 422,
    "status": "Unprocessable Entity",
    "message": "The request has invalid fields: see errors.",
    "errors": {
        "json": {
            "training": {
                "epochs": ["Must be greater than or equal to 1 and less than or equal to 1000."]
            },
            "base_model": {"uri": ["Unsupported storage scheme 'http': use s3:// or file://."]},
            "tuning": ["Unknown field."],
        }
    },
}

NOT_JSON_ERROR_EXAMPLE: dict[str, Any] = {
    "code": 400,
    "status": "Bad Request",
    "message": "The request body must be JSON, sent with Content-Type: application/json.",
}

NOT_FOUND_ERROR_EXAMPLE: dict[str, Any] = {
    "code": 404,
    "status": "Not Found",
    "message": f"No job with id '{_JOB_ID}'.",
}

CONFLICT_ERROR_EXAMPLE: dict[str, Any] = {
    "code": 409,
    "status": "Conflict",
    "message": f"Job {_JOB_ID} already finished (succeeded); nothing to cancel.",
}

UNAVAILABLE_ERROR_EXAMPLE: dict[str, Any] = {
    "code": 503,
    "status": "Service Unavailable",
    "message": "Storage is unreachable right now; retry shortly.",
}
