"""Tokens and tenants through the real app: 401, 404 across tenants, 403 outside prefixes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Config
from service.security import AuthFileError
from tests.helpers.auth import bearer
from tests.helpers.specs import raw_spec

A_JOB_ID = "ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ"
ENDPOINTS = (
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", f"/v1/jobs/{A_JOB_ID}"),
    ("POST", f"/v1/jobs/{A_JOB_ID}/cancel"),
    ("GET", f"/v1/jobs/{A_JOB_ID}/events"),
    ("GET", "/v1/no-such-endpoint"),
)


def spec_for(tenant: str, **overrides: Any) -> dict[str, Any]:
    """A spec that stays inside ``tenant``'s prefixes (see tests.helpers.auth)."""
    spec = raw_spec(
        base_model={"uri": f"s3://models/{tenant}/base/model.keras"},
        dataset={"train": f"s3://data/{tenant}/train/"},
        output={"uri": f"s3://models/{tenant}/out/v1/"},
    )
    spec.update(overrides)
    return spec


def _call(client: FlaskClient, method: str, path: str, headers: dict[str, str]) -> Any:
    body = spec_for("team-a") if method == "POST" and path == "/v1/jobs" else None
    return client.open(path, method=method, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_no_token_is_401_with_a_bearer_challenge(
    auth_client: FlaskClient, method: str, path: str
) -> None:
    response = _call(auth_client, method, path, {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="finetune"'
    assert response.json["code"] == 401
    assert "Authorization" in response.json["message"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "header",
    [
        "Bearer ftk_" + "A" * 43,  # the right shape, not a configured token
        "Bearer ",
        "Basic dGVhbS1hOnNlY3JldA==",
        "ftk_" + "A" * 43,  # no scheme
        "Bearer " + "x" * 5000,
    ],
)
def test_wrong_token_is_401(
    auth_client: FlaskClient, tokens: dict[str, str], method: str, path: str, header: str
) -> None:
    response = _call(auth_client, method, path, {"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="finetune", error=')
    assert tokens["team-a"] not in response.get_data(as_text=True)


def test_a_configured_token_is_let_in_whatever_the_scheme_case(
    auth_client: FlaskClient, tokens: dict[str, str]
) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} {tokens['team-a']}"}
        assert auth_client.get("/v1/jobs", headers=headers).status_code == 200


def test_probes_and_the_api_document_stay_open(auth_client: FlaskClient) -> None:
    assert auth_client.get("/healthz").status_code == 200
    assert auth_client.get("/readyz").status_code == 200
    document = auth_client.get("/openapi.json")
    assert document.status_code == 200
    scheme = document.json["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert document.json["security"] == [{"bearerAuth": []}]
    assert document.json["paths"]["/healthz"]["get"]["security"] == []


def test_a_tenant_never_sees_another_tenants_job(
    auth_client: FlaskClient, tokens: dict[str, str]
) -> None:
    a, b = bearer(tokens["team-a"]), bearer(tokens["team-b"])
    created = auth_client.post("/v1/jobs", json=spec_for("team-a"), headers=a)
    assert created.status_code == 201, created.json
    job_id = created.json["id"]
    b_job = auth_client.post("/v1/jobs", json=spec_for("team-b"), headers=b).json["id"]

    # B: reading, following, cancelling A's job all answer as for a job that does not exist.
    for method, path in (
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
    ):
        theirs = auth_client.open(path, method=method, headers=b)
        missing = auth_client.open(path.replace(job_id, A_JOB_ID), method=method, headers=b)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json["message"].replace(job_id, "ID") == missing.json["message"].replace(
            A_JOB_ID, "ID"
        )
    assert [job["id"] for job in auth_client.get("/v1/jobs", headers=b).json["jobs"]] == [b_job]
    listed = auth_client.get("/v1/jobs?status=queued&limit=100", headers=b).json["jobs"]
    assert job_id not in {job["id"] for job in listed}

    # A's job is untouched by B's cancel, and A sees only its own.
    mine = auth_client.get(f"/v1/jobs/{job_id}", headers=a)
    assert mine.status_code == 200 and mine.json["status"] == "queued"
    assert not mine.json["cancel_requested"]
    events = auth_client.get(f"/v1/jobs/{job_id}/events", headers=a).json["events"]
    assert [event["type"] for event in events] == ["created"]
    assert [job["id"] for job in auth_client.get("/v1/jobs", headers=a).json["jobs"]] == [job_id]
    assert auth_client.post(f"/v1/jobs/{job_id}/cancel", headers=a).status_code == 202


@pytest.mark.parametrize(
    ("overrides", "field", "kind"),
    [
        ({"dataset": {"train": "s3://data/team-b/train/"}}, ("dataset", "train"), "read"),
        ({"dataset": {"train": "s3://data/team-ab/train/"}}, ("dataset", "train"), "read"),
        (
            {"dataset": {"train": "s3://data/team-a/t/", "validation": "s3://data/x/val/"}},
            ("dataset", "validation"),
            "read",
        ),
        ({"base_model": {"uri": "s3://models/team-b/m.keras"}}, ("base_model", "uri"), "read"),
        ({"base_model": {"uri": "s3://models-team-a/m.keras"}}, ("base_model", "uri"), "read"),
        # Readable is not writable: team-a may read s3://models/team-a/ but write only out/.
        ({"output": {"uri": "s3://models/team-a/v2/"}}, ("output", "uri"), "write"),
        ({"output": {"uri": "s3://data/team-a/out/"}}, ("output", "uri"), "write"),
        ({"output": {"uri": "s3://models/team-b/out/"}}, ("output", "uri"), "write"),
    ],
)
def test_a_spec_outside_the_tenants_prefixes_is_403_naming_the_field(
    auth_client: FlaskClient,
    tokens: dict[str, str],
    overrides: dict[str, Any],
    field: tuple[str, str],
    kind: str,
) -> None:
    a = bearer(tokens["team-a"])
    spec = spec_for("team-a")
    for section, value in overrides.items():
        spec[section] = {**spec[section], **value}
    response = auth_client.post("/v1/jobs", json=spec, headers=a)
    assert response.status_code == 403, response.json
    errors = response.json["errors"]["json"]
    assert list(errors) == [field[0]] and list(errors[field[0]]) == [field[1]]
    (message,) = errors[field[0]][field[1]]
    assert f"may not {kind}" in message and "team-a" in message
    assert response.json["message"].startswith("The spec names storage")
    assert auth_client.get("/v1/jobs", headers=a).json["jobs"] == []


def test_every_offending_field_is_named_at_once(
    auth_client: FlaskClient, tokens: dict[str, str]
) -> None:
    spec = raw_spec(
        base_model={"uri": "s3://models/team-b/m.keras"},
        dataset={"train": "s3://data/team-b/t/", "validation": "s3://data/team-b/v/"},
        output={"uri": "s3://models/team-b/out/"},
    )
    response = auth_client.post("/v1/jobs", json=spec, headers=bearer(tokens["team-a"]))
    assert response.status_code == 403
    assert response.json["errors"]["json"].keys() == {"base_model", "dataset", "output"}
    assert response.json["errors"]["json"]["dataset"].keys() == {"train", "validation"}


def test_dot_segments_are_refused_before_any_prefix_check(
    auth_client: FlaskClient, tokens: dict[str, str]
) -> None:
    spec = spec_for("team-a", dataset={"train": "s3://data/team-a/../team-b/train/"})
    response = auth_client.post("/v1/jobs", json=spec, headers=bearer(tokens["team-a"]))
    assert response.status_code == 422
    assert "'..' segment" in response.json["errors"]["json"]["dataset"]["train"][0]


def test_every_operation_taking_a_job_spec_checks_the_prefixes(
    auth_client: FlaskClient, tokens: dict[str, str]
) -> None:
    """POST /v1/jobs and any other (the dry run /v1/jobs/validate) that takes a JobSpec body."""
    document = auth_client.get("/openapi.json").json
    checked = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}) if isinstance(operation, dict) else {}
            schema = body.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") != "#/components/schemas/JobSpec":
                continue
            spec = spec_for("team-a", dataset={"train": "s3://data/team-b/train/"})
            response = auth_client.open(
                path, method=method.upper(), json=spec, headers=bearer(tokens["team-a"])
            )
            assert response.status_code == 403, (path, response.json)
            assert "train" in response.json["errors"]["json"]["dataset"]
            checked.append(path)
    assert "/v1/jobs" in checked


def test_open_mode_needs_no_file_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.app"):
        app = create_app(Config(state_uri=f"file://{tmp_path / 'state'}"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("runs OPEN" in r.getMessage() for r in warnings)
    client = app.test_client()
    created = client.post("/v1/jobs", json=spec_for("anyone"))
    assert created.status_code == 201
    # Open mode is tenant "default", with no prefix limits; a token is simply ignored.
    assert client.get(f"/v1/jobs/{created.json['id']}").status_code == 200
    listed = client.get("/v1/jobs", headers={"Authorization": "Bearer whatever"})
    assert listed.status_code == 200 and len(listed.json["jobs"]) == 1


def test_a_bad_auth_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"tenants": {"team-a": {"tokens": [{"sha256": "ftk_plain"}]}}}))
    with pytest.raises(AuthFileError) as caught:
        create_app(Config(state_uri=f"file://{tmp_path / 'state'}", auth_file=path))
    assert str(path) in str(caught.value) and "never the token itself" in str(caught.value)
    with pytest.raises(AuthFileError, match="cannot be read"):
        create_app(
            Config(state_uri=f"file://{tmp_path / 'state'}", auth_file=tmp_path / "missing.json")
        )


def test_the_auth_file_comes_from_the_environment(tmp_path: Path) -> None:
    config = Config.from_env({"FINETUNE_AUTH_FILE": str(tmp_path / "a.json")})
    assert config.auth_file == tmp_path / "a.json"
    assert Config.from_env({}).auth_file is None
