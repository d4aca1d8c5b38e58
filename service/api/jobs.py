"""``/v1/jobs``: create, list, get, cancel, events."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import RAISE

from schemas import (
    EventListSchema,
    EventQuerySchema,
    JobListQuerySchema,
    JobListSchema,
    JobSchema,
    JobSpecSchema,
)
from service.api import services
from service.api.access import requires_spec_storage
from service.api.auth import current_principal
from service.api.responses import documents_errors
from service.jobs import JobIsFinal, NoSuchJob
from service.jobs.store import InvalidCursor

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/v1/jobs",
    description="Fine-tuning jobs: submit, poll, list, cancel, follow events.",
)


@blp.before_request
def _require_json_body() -> None:
    if request.method == "POST" and request.content_length and not request.is_json:
        abort(
            400, message="The request body must be JSON, sent with Content-Type: application/json."
        )


def _tenant() -> str:
    """The tenant of the caller ("default" while the service runs open)."""
    return current_principal().tenant


def _get_or_404(job_id: str) -> dict[str, Any]:
    try:
        return services().jobs.get(job_id, _tenant()).public()
    except NoSuchJob:
        abort(404, message=f"No job with id {job_id!r}.")
        raise  # unreachable: abort raises


@blp.route("")
class Jobs(MethodView):
    """The collection of jobs."""

    @blp.arguments(JobListQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, JobListSchema)
    @documents_errors(blp, 401, 422, 503)
    def get(
        self,
        limit: int,
        status: str | None = None,
        label: str | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """List jobs, newest first.

        Filter by ``status`` and by ``label`` (``key=value``); page with ``limit`` and the
        ``next_cursor`` of the previous page.
        """
        label_pair = tuple(label.split("=", 1)) if label else None
        try:
            records, next_cursor = services().jobs.list(
                tenant=_tenant(),
                status=status,
                label=label_pair,  # type: ignore[arg-type]
                limit=limit,
                cursor=cursor,
            )
        except InvalidCursor as exc:
            abort(422, message=str(exc), errors={"query": {"cursor": [str(exc)]}})
        return {"jobs": [record.public() for record in records], "next_cursor": next_cursor}

    @blp.arguments(
        JobSpecSchema,
        example={
            "base_model": {"uri": "s3://models/flowers/v6/model.keras"},
            "dataset": {"train": "s3://data/flowers/train/", "image_size": [224, 224]},
            "head": {"num_classes": 5, "hidden_units": [128], "dropout": 0.2},
            "freeze": "base",
            "training": {"epochs": 5, "learning_rate": 0.001},
            "output": {"uri": "s3://models/flowers/v7/"},
        },
    )
    @blp.response(
        201,
        JobSchema,
        headers={"Location": {"description": "/v1/jobs/{id}", "schema": {"type": "string"}}},
    )
    @documents_errors(blp, 400, 401, 403, 413, 422, 503)
    @requires_spec_storage
    def post(self, spec: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Validate a job spec and queue it.

        Where tokens are configured, every input (``base_model.uri``, ``dataset.*``) must lie
        under a prefix the caller's tenant may read and ``output.uri`` under one it may write
        (403 otherwise).
        """
        record = services().jobs.create(spec, tenant=_tenant())
        location = url_for("jobs.Job", job_id=record.id)
        return record.public(), 201, {"Location": location}


@blp.route("/<string:job_id>")
class Job(MethodView):
    """One job."""

    @blp.response(200, JobSchema)
    @documents_errors(blp, 401, 404, 503)
    def get(self, job_id: str) -> dict[str, Any]:
        """The job: status, progress, metrics, result or error."""
        return _get_or_404(job_id)


@blp.route("/<string:job_id>/cancel")
class JobCancel(MethodView):
    """Stopping a job."""

    @blp.response(202, JobSchema)
    @documents_errors(blp, 401, 404, 409, 503)
    def post(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job at once, or ask a running job's worker to stop it."""
        try:
            return services().jobs.cancel(job_id, _tenant()).public()
        except NoSuchJob:
            abort(404, message=f"No job with id {job_id!r}.")
        except JobIsFinal as exc:
            abort(409, message=f"Job {job_id} already finished ({exc.status}); nothing to cancel.")
        raise AssertionError("unreachable")


@blp.route("/<string:job_id>/events")
class JobEvents(MethodView):
    """What happened to a job."""

    @blp.arguments(EventQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, EventListSchema)
    @documents_errors(blp, 401, 404, 422, 503)
    def get(self, job_id: str, after: int) -> dict[str, Any]:
        """The job's events, oldest first; ``after`` returns only newer ones."""
        try:
            events = services().jobs.read_events(job_id, after, _tenant())
        except NoSuchJob:
            abort(404, message=f"No job with id {job_id!r}.")
        return {"events": [event.__dict__ for event in events]}
