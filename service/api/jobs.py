"""``/v1/jobs``: create, list, get, cancel, events."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from schemas import (
    ErrorSchema,
    EventListSchema,
    EventQuerySchema,
    JobListQuerySchema,
    JobListSchema,
    JobSchema,
    JobSpecSchema,
)
from service.api import services
from service.jobs import JobIsFinal, NoSuchJob
from service.jobs.idempotency import MAX_KEY_LENGTH, IdempotencyConflict, create_once
from service.jobs.store import InvalidCursor
from service.storage.uri import parse_uri

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/v1/jobs",
    description="Fine-tuning jobs: submit, poll, list, cancel, follow events.",
)

TENANT = "default"
IDEMPOTENCY_HEADER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Repeat a POST safely: the same key and body return the first job (200); "
    "the same key with another body is a 409.",
}
STORAGE_FIELDS = (
    ("base_model", "uri"),
    ("dataset", "train"),
    ("dataset", "validation"),
    ("output", "uri"),
)


@blp.before_request
def _require_json_body() -> None:
    if request.method == "POST" and request.content_length and not request.is_json:
        abort(
            400, message="The request body must be JSON, sent with Content-Type: application/json."
        )


def _check_storage_schemes(spec: dict[str, Any]) -> None:
    """422 for ``file://`` URIs where this service has no local storage."""
    if services().config.allow_local_storage:
        return
    errors: dict[str, Any] = {}
    for section, name in STORAGE_FIELDS:
        uri = (spec.get(section) or {}).get(name)
        if uri and parse_uri(uri).scheme == "file":
            errors.setdefault(section, {})[name] = [
                "file:// storage is not enabled on this service: use s3://bucket/key."
            ]
    if errors:
        abort(422, message="The request has invalid fields: see errors.", errors={"json": errors})


def _get_or_404(job_id: str) -> dict[str, Any]:
    try:
        return services().jobs.get(job_id, TENANT).public()
    except NoSuchJob:
        abort(404, message=f"No job with id {job_id!r}.")
        raise  # unreachable: abort raises


@blp.route("")
class Jobs(MethodView):
    """The collection of jobs."""

    @blp.arguments(JobListQuerySchema, location="query", as_kwargs=True)
    @blp.response(200, JobListSchema)
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
                tenant=TENANT,
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
    @blp.alt_response(
        200,
        schema=JobSchema,
        description="A repeated Idempotency-Key with the same body: the job it made.",
    )
    @blp.alt_response(
        409, schema=ErrorSchema, description="The Idempotency-Key was used with a different body."
    )
    @blp.alt_response(422, schema=ErrorSchema, description="A field is invalid; errors names it.")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def post(self, spec: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Validate a job spec and queue it.

        With an ``Idempotency-Key`` header, repeating the request (same key, same body) returns
        the job the first one created, with 200, however many replicas answer.
        """
        _check_storage_schemes(spec)
        key = request.headers.get("Idempotency-Key")
        if key is None:
            record, created = services().jobs.create(spec, tenant=TENANT), True
        else:
            if not 0 < len(key) <= MAX_KEY_LENGTH:
                abort(400, message=f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters.")
            try:
                record, created = create_once(services().jobs, spec, TENANT, key)
            except IdempotencyConflict as exc:
                abort(409, message=f"{exc} Use a new key for a new job.")
        location = url_for("jobs.Job", job_id=record.id)
        return record.public(), 201 if created else 200, {"Location": location}


@blp.route("/<string:job_id>")
class Job(MethodView):
    """One job."""

    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    def get(self, job_id: str) -> dict[str, Any]:
        """The job: status, progress, metrics, result or error."""
        return _get_or_404(job_id)


@blp.route("/<string:job_id>/cancel")
class JobCancel(MethodView):
    """Stopping a job."""

    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(409, schema=ErrorSchema, description="The job already finished.")
    def post(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job at once, or ask a running job's worker to stop it."""
        try:
            return services().jobs.cancel(job_id, TENANT).public()
        except NoSuchJob:
            abort(404, message=f"No job with id {job_id!r}.")
        except JobIsFinal as exc:
            abort(409, message=f"Job {job_id} already finished ({exc.status}); nothing to cancel.")
        raise AssertionError("unreachable")


@blp.route("/<string:job_id>/events")
class JobEvents(MethodView):
    """What happened to a job."""

    @blp.arguments(EventQuerySchema, location="query", as_kwargs=True)
    @blp.response(200, EventListSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    def get(self, job_id: str, after: int) -> dict[str, Any]:
        """The job's events, oldest first; ``after`` returns only newer ones."""
        try:
            events = services().jobs.read_events(job_id, after, TENANT)
        except NoSuchJob:
            abort(404, message=f"No job with id {job_id!r}.")
        return {"events": [event.__dict__ for event in events]}
