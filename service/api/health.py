"""Liveness and readiness probes; open, with or without tokens (they carry no tenant data)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from service.api import services
from service.api.errors import RETRY_AFTER_SECONDS, error_response
from service.api.responses import documents_errors
from service.metrics.api import count_storage_error
from service.storage.errors import StorageError

blp = Blueprint("health", __name__, description="Probes for load balancers and orchestrators.")
_OPEN: dict[str, Any] = {"security": []}


class HealthSchema(Schema):
    """Answer of ``GET /healthz``."""

    status = fields.String(required=True, metadata={"enum": ["ok"]})


class ReadySchema(Schema):
    """Answer of ``GET /readyz``."""

    status = fields.String(required=True, metadata={"enum": ["ready"]})
    storage = fields.String(required=True, metadata={"description": "The job store in use."})


@blp.route("/healthz")
class Health(MethodView):
    """Liveness."""

    @blp.doc(**_OPEN)
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    """Readiness."""

    @blp.doc(**_OPEN)
    @blp.response(200, ReadySchema)
    @documents_errors(blp, 503, d503="Job storage is not usable; the message says why.")
    def get(self) -> dict[str, Any] | Response:
        """Storage is reachable and usable; 503 says what is not."""
        jobs = services().jobs
        try:
            jobs.queued_ids(limit=1)
        except StorageError as exc:
            count_storage_error("readyz")
            return error_response(
                503,
                f"Job storage {jobs.store.description} is not usable: {exc}",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return {"status": "ready", "storage": jobs.store.description}
