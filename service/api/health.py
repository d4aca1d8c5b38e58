"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.api import services
from service.api.errors import error_response
from service.metrics.api import count_storage_error
from service.storage.errors import StorageError

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz() -> Response:
    """Storage is reachable and usable; 503 says what is not."""
    jobs = services().jobs
    try:
        jobs.queued_ids(limit=1)
    except StorageError as exc:
        count_storage_error("readyz")
        return error_response(
            503,
            f"Job storage {jobs.store.description} is not usable: {exc}",
            headers={"Retry-After": "5"},
        )
    return jsonify({"status": "ready", "storage": jobs.store.description})
