"""``/v1/jobs``: create, list, get, cancel, events.

The views' docstrings are their operations' summary and description in the OpenAPI document,
rendered on ``/docs`` as Markdown: they quote names with single backticks.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import RAISE

from schemas import (
    DryRunReportSchema,
    EventListSchema,
    EventQuerySchema,
    JobListQuerySchema,
    JobListSchema,
    JobSchema,
    JobSpecSchema,
    SubmitQuerySchema,
    examples,
)
from service.api import dry_runs, input_checks, services
from service.api.access import requires_spec_storage
from service.api.auth import current_principal
from service.api.errors import RETRY_AFTER_SECONDS
from service.api.responses import documents_errors
from service.contract.plan import JobPlan
from service.jobs import JobIsFinal, JobRecord, NoSuchJob
from service.jobs.dry_runs import INTERRUPTED, TAKE_SECONDS, TIMED_OUT
from service.jobs.errors import DryRunNotTaken, DryRunTimedOut
from service.jobs.idempotency import MAX_KEY_LENGTH, IdempotencyConflict, create_once
from service.jobs.store import InvalidCursor
from service.jobs.workers import WorkerRegistry
from service.storage.errors import StorageError
from service.webhooks import check_literal_host

log = logging.getLogger(__name__)

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/v1/jobs",
    description="Fine-tuning jobs: submit, poll, list, cancel, follow events.",
)

IDEMPOTENCY_HEADER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Repeat a POST safely: the same key and body return the first job (200); "
    "the same key with another body is a 409.",
}
SPEC_EXAMPLES = {
    "minimal": {
        "summary": "Only what is required",
        "value": {
            "base_model": {"uri": "s3://models/flowers/v6/model.keras"},
            "dataset": {"train": "s3://data/flowers/train/"},
            "output": {"uri": "s3://models/flowers/v7/"},
        },
    },
    "classic": {
        "summary": "New head, gradual unfreezing, a gate and a webhook",
        "value": examples.JOB_SPEC_EXAMPLE,
    },
}


@blp.before_request
def _require_json_body() -> None:
    if request.method == "POST" and request.content_length and not request.is_json:
        abort(
            400, message="The request body must be JSON, sent with Content-Type: application/json."
        )


def _tenant() -> str:
    """The tenant of the caller ("default" while the service runs open)."""
    return current_principal().tenant


def _check_webhook_address(spec: dict[str, Any]) -> None:
    """422 for a webhook URL whose host is a loopback, link-local or private IP literal.

    Host names are resolved and checked when the webhook is sent (service/webhooks).
    """
    url = JobPlan.from_spec(spec).webhook_url
    reason = url and check_literal_host(url, services().config.webhook_allow_private)
    if reason:
        abort(
            422,
            message="The request has invalid fields: see errors.",
            errors={"json": {"notify": {"webhook_url": [reason]}}},
        )


def _check_resources(spec: dict[str, Any]) -> None:
    """422 for a job asking for more devices than the service lets one job use."""
    gpus = JobPlan.from_spec(spec).training_plan.resources.gpus
    most = services().config.max_gpus_per_job
    if gpus > most:
        abort(
            422,
            message="The request has invalid fields: see errors.",
            errors={
                "json": {
                    "resources": {
                        "gpus": [
                            f"At most {most} devices per job on this service; ask for "
                            f"{most} or fewer."
                        ]
                    }
                }
            },
        )


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
    @blp.response(200, JobListSchema, example=examples.JOB_LIST_EXAMPLE)
    @documents_errors(blp, 401, 422, 503)
    def get(
        self,
        limit: int,
        status: str | None = None,
        label: str | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """List jobs, newest first.

        Filter by `status` and by `label` (`key=value`); page with `limit` and the
        `next_cursor` of the previous page.
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

    @blp.arguments(JobSpecSchema, examples=SPEC_EXAMPLES)
    @blp.arguments(SubmitQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(
        201,
        JobSchema,
        example={**examples.JOB_RUNNING_EXAMPLE, "status": "queued", "lease": None},
        headers={"Location": {"description": "/v1/jobs/{id}", "schema": {"type": "string"}}},
    )
    @blp.alt_response(
        200,
        schema=JobSchema,
        description="A repeated Idempotency-Key with the same body: the job it made.",
    )
    @documents_errors(
        blp,
        400,
        401,
        403,
        409,
        413,
        422,
        503,
        504,
        d409="The Idempotency-Key was used with a different body.",
        d504="With `validate=true`: a worker took the dry run but it did not finish in time.",
    )
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    @requires_spec_storage
    def post(
        self, spec: dict[str, Any], dry_run_first: bool = False
    ) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Validate a job spec and queue it.

        Where tokens are configured, every input (`base_model.uri`, `dataset.*`) must lie
        under a prefix the caller's tenant may read and `output.uri` under one it may write
        (403 otherwise). The base model (or its weights file) and each dataset must be
        stored where the spec says (422 naming the field otherwise), and `output.uri` must
        not hold a published model unless `output.overwrite` is true (422 on `output.uri`;
        a model that appears there later fails the job with `output_exists`); whether they fit
        together is the dry run's check (`POST /v1/jobs/validate`), run first with
        `?validate=true`. With an `Idempotency-Key` header, repeating the request (same key,
        same body) returns the job the first one created, with 200, however many replicas
        answer.
        """
        _check_webhook_address(spec)
        _check_resources(spec)
        key = request.headers.get("Idempotency-Key")

        def check_new(spec: dict[str, Any]) -> None:
            _check_inputs_stored(spec)
            if dry_run_first:
                _dry_run(spec)

        if key is None:
            check_new(spec)
            record, created = services().jobs.create(spec, tenant=_tenant()), True
        else:
            if not 0 < len(key) <= MAX_KEY_LENGTH:
                abort(400, message=f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters.")
            try:
                # Checked only for a new key: a repeat returns its job, as the first answer did.
                record, created = create_once(
                    services().jobs, spec, _tenant(), key, check_new=check_new
                )
            except IdempotencyConflict as exc:
                abort(409, message=f"{exc} Use a new key for a new job.")
        if created:
            _say_if_no_worker_holds_it(record)
        location = url_for("jobs.Job", job_id=record.id)
        return record.public(), 201 if created else 200, {"Location": location}


def _say_if_no_worker_holds_it(record: JobRecord) -> None:
    """A job of several devices that no running worker holds gets its ``waiting`` event now.

    A worker writes the same event (once: whoever writes first) when it sees the job and
    cannot hold it; with no worker running (a pool scaled to zero) nobody would, until one
    starts. Every worker holds one device, so a one-device job is never looked at. Where
    storage does not answer, the job is queued all the same and the workers say it later.
    """
    wanted = JobPlan.from_spec(record.spec).training_plan.resources.gpus
    if wanted <= 1:
        return
    jobs = services().jobs
    try:
        most = WorkerRegistry(jobs.store, jobs.prefix).most_devices(services().config.lease_seconds)
        if most < wanted:
            jobs.note_waiting(record.id, wanted, most)
    except StorageError as exc:
        log.info("job %s: what the workers hold is not known now (%s)", record.id, exc)


def _check_inputs_stored(spec: dict[str, Any]) -> None:
    """Abort with 422 where the base model, its weights or a dataset is not stored, or where
    ``output.uri`` holds a published model that ``output.overwrite`` does not let it replace."""
    plan = JobPlan.from_spec(spec)
    missing = input_checks().missing(plan)
    if missing:
        abort(
            422,
            message="The spec names inputs that are not stored: see errors.",
            errors={"json": missing},
        )
    taken = input_checks().taken_output(plan)
    if taken:
        abort(
            422,
            message="output.uri already holds a published model: see errors.",
            errors={"json": taken},
        )


@blp.route("/validate")
class JobValidate(MethodView):
    """The dry run."""

    @blp.arguments(JobSpecSchema, examples=SPEC_EXAMPLES)
    @blp.response(200, DryRunReportSchema)
    @documents_errors(
        blp,
        400,
        401,
        403,
        413,
        422,
        503,
        504,
        d422="A field is invalid, or the spec does not fit its model or data: errors names "
        "each field (errors.json.head.cut_at, errors.json.schedule.1.freeze.until, ...).",
        d503="No worker took the dry run (all busy, or none running), or storage is "
        "unreachable; retry after Retry-After seconds.",
        d504="A worker took the dry run but it did not finish in time.",
    )
    @requires_spec_storage
    def post(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Check a job spec against its base model and data, and queue nothing.

        Everything POST /v1/jobs checks, and then: the base model opens (safely) and the data
        exists; a sample of the data (a few images per class) is read; the report says the
        model's input shape and layers, where head.cut_at and each phase's freeze land (layer
        names, weight tensors that stay trainable), and the classes found. Every incompatibility
        is a 422 naming its field. No GPU time is spent: the model is only opened.
        """
        _check_webhook_address(spec)
        _check_resources(spec)
        return {"valid": True, **_dry_run(spec)}


def _dry_run(spec: dict[str, Any]) -> dict[str, Any]:
    """The dry run's report; aborts with its refusal (422) or why there is none (503, 504)."""
    timeout = services().config.dry_run_timeout_seconds
    try:
        result = dry_runs().run(spec, timeout)
    except DryRunNotTaken:
        abort(
            503,
            message=f"No worker took the dry run within {TAKE_SECONDS:g} s: every worker "
            "is busy with dry runs, or none is running. Retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except DryRunTimedOut:
        abort(504, message=f"The dry run did not finish within {timeout:g} s; retry later.")
    if result.failure is not None:
        _abort_failed_dry_run(result.failure)
    if result.errors:
        abort(
            422,
            message="The spec does not fit its model or data: see errors.",
            errors={"json": nest_field_errors(result.errors)},
        )
    return dict(result.report)


def _abort_failed_dry_run(failure: dict[str, str]) -> None:
    if failure["code"] == TIMED_OUT:
        abort(
            504, message=f"The dry run did not finish in time ({failure['message']}); retry later."
        )
    if failure["code"] == INTERRUPTED:
        abort(
            503,
            message="The worker running the dry run is shutting down; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    abort(500, message="The dry run failed unexpectedly; the worker's log has details.")


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

    @blp.response(
        200,
        JobSchema,
        examples={
            "running": {"value": examples.JOB_RUNNING_EXAMPLE},
            "succeeded": {"value": examples.JOB_SUCCEEDED_EXAMPLE},
            "gate_failed": {"value": examples.JOB_GATE_FAILED_EXAMPLE},
        },
    )
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
            record = services().jobs.cancel(job_id, _tenant())
            if record.is_final:  # a queued job is cancelled here, not by a worker
                current_app.extensions["finetune_notifier"].job_finished(record)
            return record.public()
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
        """The job's events, oldest first; `after` returns only newer ones."""
        try:
            events = services().jobs.read_events(job_id, after, _tenant())
        except NoSuchJob:
            abort(404, message=f"No job with id {job_id!r}.")
        return {"events": [event.__dict__ for event in events]}
