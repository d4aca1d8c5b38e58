"""``/v1/jobs``: create, list, get, cancel, events."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from schemas import (
    DryRunReportSchema,
    ErrorSchema,
    EventListSchema,
    EventQuerySchema,
    JobListQuerySchema,
    JobListSchema,
    JobSchema,
    JobSpecSchema,
)
from service.api import dry_runner, services
from service.dryrun import DryRunBusy, DryRunTimeout
from service.dryrun.errors import DryRunFailed
from service.jobs import JobIsFinal, NoSuchJob
from service.jobs.store import InvalidCursor
from service.storage.uri import parse_uri

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/v1/jobs",
    description="Fine-tuning jobs: submit, poll, list, cancel, follow events.",
)

TENANT = "default"
SPEC_EXAMPLE = {
    "base_model": {"uri": "s3://models/flowers/v6/model.keras"},
    "dataset": {"train": "s3://data/flowers/train/", "image_size": [224, 224]},
    "head": {"num_classes": 5, "hidden_units": [128], "dropout": 0.2},
    "freeze": "base",
    "training": {"epochs": 5, "learning_rate": 0.001},
    "output": {"uri": "s3://models/flowers/v7/"},
}
STORAGE_FIELDS = (
    ("base_model", "uri"),
    ("base_model", "weights_uri"),
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

    @blp.arguments(JobSpecSchema, example=SPEC_EXAMPLE)
    @blp.response(
        201,
        JobSchema,
        headers={"Location": {"description": "/v1/jobs/{id}", "schema": {"type": "string"}}},
    )
    @blp.alt_response(422, schema=ErrorSchema, description="A field is invalid; errors names it.")
    def post(self, spec: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Validate a job spec and queue it."""
        _check_storage_schemes(spec)
        record = services().jobs.create(spec, tenant=TENANT)
        location = url_for("jobs.Job", job_id=record.id)
        return record.public(), 201, {"Location": location}


@blp.route("/validate")
class JobValidate(MethodView):
    """The dry run."""

    @blp.arguments(JobSpecSchema, example=SPEC_EXAMPLE)
    @blp.response(200, DryRunReportSchema)
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="A field is invalid, or the spec does not fit its model or data: errors "
        "names each field (errors.json.head.cut_at, errors.json.schedule.1.freeze.until, ...).",
    )
    @blp.alt_response(503, schema=ErrorSchema, description="Too many dry runs; retry shortly.")
    @blp.alt_response(504, schema=ErrorSchema, description="The dry run took too long.")
    def post(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Check a job spec against its base model and data, and queue nothing.

        Everything POST /v1/jobs checks, and then: the base model opens (safely) and the data
        exists; a sample of the data (a few images per class) is read; the report says the
        model's input shape and layers, where head.cut_at and each phase's freeze land (layer
        names, weight tensors that stay trainable), and the classes found. Every incompatibility
        is a 422 naming its field. No GPU time is spent: the model is only opened.
        """
        _check_storage_schemes(spec)
        try:
            result = dry_runner().run(spec)
        except DryRunBusy:
            abort(
                503,
                message="Too many dry runs are running; retry shortly.",
                headers={"Retry-After": "5"},
            )
        except DryRunTimeout as exc:
            abort(504, message=f"The dry run did not finish in time ({exc}); retry later.")
        except DryRunFailed:
            abort(500, message="The dry run failed unexpectedly; the service log has details.")
        if not result.valid:
            abort(
                422,
                message="The spec does not fit its model or data: see errors.",
                errors={"json": nest_field_errors(result.errors)},
            )
        return {"valid": True, **result.report}


def nest_field_errors(flat: dict[str, list[str]]) -> dict[str, Any]:
    """``{"head.cut_at": [...]}`` as ``{"head": {"cut_at": [...]}}``.

    A field with errors of its own and of its sub-fields keeps its own under ``_schema``, as
    marshmallow does.
    """
    nested: dict[str, Any] = {}
    for path, messages in sorted(flat.items()):
        node = nested
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if isinstance(child, list):
                child = node[part] = {"_schema": child}
            node = child
        leaf = parts[-1]
        if isinstance(node.get(leaf), dict):
            node[leaf].setdefault("_schema", []).extend(messages)
        else:
            node.setdefault(leaf, []).extend(messages)
    return nested


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
