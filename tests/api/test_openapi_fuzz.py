"""schemathesis against the served OpenAPI document: no 5xx, every answer as documented.

The app is the real one, in-process through WSGI, with tokens configured and a local job
store (no network). For each operation schemathesis generates requests from the document,
valid ones and invalid ones, a bounded number of each; operations on one job run both with
drawn ids and with the id of a real job, so that the job's own answers are checked too.
Every default check runs on every answer (server errors, status codes, content types,
headers and bodies against the document, valid data accepted, invalid data refused).

(schemathesis's pytest plugin cannot load a schema from a fixture under pytest 9, so the
test drives its Hypothesis strategies itself.)
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from marshmallow import ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from schemas import JobSpecSchema
from schemas.job_spec import LABEL_KEY, MAX_EPOCHS, BaseModelSchema
from service.api.inputs import InputChecks
from service.app import create_app
from service.config import Config
from service.context import build_services
from service.contract.plan import JobPlan
from service.storage import Storage
from tests.helpers.auth import bearer, write_auth_file
from tests.helpers.services import running_worker
from tests.helpers.specs import raw_spec

MAX_EXAMPLES = 40


@pytest.fixture
def fuzz_target(tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    """The app (local storage on, as the embedded default has it), and a token whose tenant may
    read s3://data/, s3://models/ and local files, and write the latter two: generated specs
    land inside and outside its prefixes. A worker's dry-run thread answers the dry runs.
    """
    tokens = write_auth_file(
        tmp_path / "auth.json",
        {
            "fuzz": {
                "read": ["s3://data/", "s3://models/", "file:///"],
                "write": ["s3://models/", "file:///"],
            }
        },
    )
    config = Config(
        state_uri=f"file://{tmp_path / 'state'}",
        work_dir=tmp_path / "work",
        allow_local_storage=True,
        auth_file=tmp_path / "auth.json",
        # A private webhook address is a deployment rule, not a rule of the document.
        webhook_allow_private=True,
        # So is the most devices one job may ask for.
        max_gpus_per_job=sys.maxsize,
    )
    with running_worker(build_services(config), jobs=False):
        yield create_app(config), tokens["fuzz"]


def _names_missing_inputs(body: Any, storage: Storage) -> bool:
    """Whether a spec that the schema takes names a base model or data that are not stored."""
    try:
        spec = JobSpecSchema().load(body)
    except ValidationError:
        return False
    return bool(InputChecks(storage).missing(JobPlan.from_spec(spec)))


# Fields whose refusal can come from a rule joining several fields: a schedule's floor below the
# phase's learning rate and its warm-up shorter than the phase, an optimizer's own options, label
# smoothing only with a loss that takes it, a batch that splits evenly across the job's devices;
# a gate's test_ metric only with dataset.test, its min_delta and max_class_drop only with
# compare_with.
RULES_ACROSS_FIELDS = frozenset(
    {
        "metric",
        "min_delta",
        "max_class_drop",
        "min_learning_rate",
        "warmup_epochs",
        "weight_decay",
        "momentum",
        "nesterov",
        "label_smoothing",
        # A multiple of resources.gpus.
        "batch_size",
    }
)


def _broken_rules(body: Any) -> set[str]:
    """The names of the fields the schema refuses in ``body`` (innermost names)."""
    if not isinstance(body, dict):
        return set()

    def leaves(errors: Any, name: str) -> set[str]:
        if isinstance(errors, dict):
            return set().union(*(leaves(value, str(key)) for key, value in errors.items()))
        return {name}

    return leaves(JobSpecSchema().validate(body), "")


def _beyond_the_document(case: Any, cursors: set[str], storage: Storage) -> bool:
    """Whether the request breaks a rule that OpenAPI 3.0 cannot express.

    A cursor is opaque (any string of its alphabet fits; one never handed out is 422);
    label keys and class-weight class names have a syntax (OpenAPI 3.0 has no propertyNames);
    the epochs of all phases together have a maximum; the option names base_model.options
    takes depend on the architecture (the document lists them in words); and the dry run's
    whole point is to refuse, with a 422, a spec whose model or data do not exist or do not fit
    (on its own or first, with POST /v1/jobs?validate=true),
    as POST /v1/jobs refuses one whose inputs are not stored (drawn paths mostly are not); and
    some recipe fields are refused by rules that join fields (RULES_ACROSS_FIELDS).
    (base_model's one-source rule is in the document: drawn specs keep it.)
    """
    if case.operation.label == "POST /v1/jobs/validate":
        return True
    if case.operation.label == "POST /v1/jobs" and (case.query or {}).get("validate") is True:
        return True  # the dry run first
    if case.operation.label == "POST /v1/jobs" and _names_missing_inputs(case.body, storage):
        return True
    if _broken_rules(case.body) and _broken_rules(case.body) <= RULES_ACROSS_FIELDS:
        return True
    if (case.query or {}).get("cursor") not in (None, *cursors):
        return True
    body = case.body if isinstance(case.body, dict) else {}
    labels = body.get("labels")
    if isinstance(labels, dict) and not all(LABEL_KEY.match(key) for key in labels):
        return True
    base = body.get("base_model")
    if isinstance(base, dict) and "options" in BaseModelSchema().validate(base):
        return True
    weights = (body.get("training") or {}).get("class_weight")
    if isinstance(weights, dict) and not all(0 < len(name) <= 256 for name in weights):
        return True
    schedule = body.get("schedule")
    if isinstance(schedule, list):
        total = sum(p.get("epochs", 0) for p in schedule if isinstance(p, dict))
        if total > MAX_EPOCHS:
            return True
    return False


def _run(
    operation: Any,
    mode: GenerationMode,
    token: str,
    cursors: set[str],
    statuses: Counter[int],
    storage: Storage,
    **fixed: Any,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        # The same inputs on every run, so that a failure is a regression rather than luck.
        # To explore further, run with derandomize off and a larger MAX_EXAMPLES.
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        excluded = []
        if _beyond_the_document(case, cursors, storage):
            # Valid by the document, refused by a rule it cannot state: every other check
            # (no 5xx, documented status, body and headers) still runs on the answer.
            excluded.append(positive_data_acceptance)
        # schemathesis draws the bearer token itself: a well-formed one becomes the real
        # token, so requests get past authentication; a missing or malformed one stays (401).
        authorization = (case.headers or {}).get("Authorization")
        if isinstance(authorization, str) and authorization.startswith("Bearer "):
            case.headers["Authorization"] = f"Bearer {token}"
        response = case.call_and_validate(excluded_checks=excluded)
        statuses[response.status_code] += 1

    check()


def test_api_answers_as_documented(fuzz_target: tuple[Flask, str]) -> None:
    app, token = fuzz_target
    headers = bearer(token)
    client = app.test_client()
    queued = client.post("/v1/jobs", json=raw_spec(), headers=headers).json["id"]
    finished = client.post("/v1/jobs", json=raw_spec(), headers=headers).json["id"]
    assert client.post(f"/v1/jobs/{finished}/cancel", headers=headers).status_code == 202
    cursor = client.get("/v1/jobs?limit=1", headers=headers).json["next_cursor"]

    api = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures: list[str] = []
    ran: list[str] = []
    statuses: Counter[int] = Counter()
    for result in api.get_all_operations():
        operation = result.ok()
        variants: list[dict[str, Any]] = [{}]
        if "{job_id}" in operation.path:
            variants += [{"path_parameters": {"job_id": queued}}]
            variants += [{"path_parameters": {"job_id": finished}}]
        if operation.label == "GET /v1/jobs":
            variants += [{"query": {"cursor": cursor}}]
        modes = [GenerationMode.POSITIVE]
        if operation.path_parameters or operation.query or operation.body:
            modes.append(GenerationMode.NEGATIVE)  # nothing to get wrong in the probes
        for mode in modes:
            for fixed in variants:
                label = f"{operation.label} {mode.value} {fixed or ''}"
                ran.append(label)
                try:
                    storage = app.extensions["finetune"].storage
                    _run(operation, mode, token, {cursor}, statuses, storage, **fixed)
                except (Exception, BaseExceptionGroup) as exc:  # collect all, report together
                    failures.append(f"{label}:\n{exc}")
    assert len(ran) == 2 * (8 + 2 * 3 + 1) + 2, ran  # every /v1 operation and both probes
    assert not failures, "\n\n".join(failures)
    # The requests got past authentication and validation as well as being refused by them.
    assert {200, 201, 202, 401, 403, 404, 409, 422} <= set(statuses), statuses
