"""Hostile sizes: every string, list, map and count has a maximum, enforced and documented."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.helpers.specs import raw_spec


def _nested(path: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` from ``"a.b"``, merged into a valid spec."""
    spec = raw_spec()
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("name", "n" * 201, "name"),
        ("labels", {f"k{i}": "v" for i in range(33)}, "labels"),
        ("labels", {"team": "v" * 257}, "labels"),
        ("labels", {"k" * 64: "v"}, "labels"),
        ("training.epochs", 1001, "training.epochs"),
        ("training.batch_size", 4097, "training.batch_size"),
        ("training.metrics", ["accuracy"] * 17, "training.metrics"),
        ("training.metrics", ["m" * 65], "training.metrics"),
        ("training.loss", "l" * 65, "training.loss"),
        ("training.early_stopping", {"monitor": "m" * 65}, "training.early_stopping.monitor"),
        ("training.early_stopping", {"patience": 1001}, "training.early_stopping.patience"),
        ("head", {"hidden_units": [8] * 9}, "head.hidden_units"),
        ("head", {"hidden_units": [65537]}, "head.hidden_units"),
        ("head", {"num_classes": 100_001}, "head.num_classes"),
        ("head", {"cut_at": 100_001}, "head.cut_at"),
        ("head", {"cut_at": "x" * 257}, "head.cut_at"),
        ("freeze", {"until": "x" * 257}, "freeze"),
        ("freeze", {"pattern": "x" * 257}, "freeze"),
        ("freeze", {"first_n": 100_001}, "freeze"),
        ("schedule", [{"epochs": 1}] * 21, "schedule"),
        ("schedule", [{"epochs": 600}, {"epochs": 401}], "schedule"),
        ("schedule", [{"epochs": 1001}], "schedule.0.epochs"),
        ("dataset", {"train": "s3://d/" + "k" * 1020}, "dataset.train"),
        ("dataset", {"train": "s3://d/t/", "image_size": [4097, 8]}, "dataset.image_size"),
        ("gate", {"metric": "m" * 65, "min": 0.5}, "gate.metric"),
        ("limits", {"max_runtime_seconds": 7 * 86_400 + 1}, "limits.max_runtime_seconds"),
        ("limits", {"max_attempts": 21}, "limits.max_attempts"),
    ],
)
def test_every_maximum_is_enforced_naming_the_field(
    client: FlaskClient, path: str, value: Any, named: str
) -> None:
    response = client.post("/v1/jobs", json=_nested(path, value))
    assert response.status_code == 422, response.json
    errors = response.json["errors"]["json"]
    for part in named.split("."):
        errors = errors[part]  # JSON keys: list indexes come as strings too
    assert errors


@pytest.mark.parametrize(
    "query",
    ["label=" + "k=" + "v" * 400, "limit=101", "cursor=" + "c" * 513, "status=" + "s" * 100],
)
def test_query_maxima(client: FlaskClient, query: str) -> None:
    response = client.get(f"/v1/jobs?{query}")
    assert response.status_code == 422
    assert response.json["errors"]["query"]


def test_events_after_is_bounded(client: FlaskClient) -> None:
    response = client.get("/v1/jobs/ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ/events?after=" + "9" * 30)
    assert response.status_code == 422
    assert response.json["errors"]["query"]["after"]


def test_json_nested_too_deeply_is_400_not_500(client: FlaskClient) -> None:
    body = "[" * 100_000 + "]" * 100_000  # 200 kB, inside the size limit
    response = client.post("/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json["message"]


def test_oversized_body_says_the_limit(client: FlaskClient) -> None:
    response = client.post(
        "/v1/jobs", data=b"{" + b" " * (1 << 20) + b"}", content_type="application/json"
    )
    assert response.status_code == 413
    assert "1048576 bytes" in response.json["message"]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        resolved: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
        return resolved
    return schema


def _unbounded(document: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    """Places in ``schema`` (an OpenAPI schema) that have no documented maximum."""
    schema = _resolve(document, schema)
    found: list[str] = []
    for key in ("oneOf", "anyOf", "allOf"):
        for index, option in enumerate(schema.get(key, [])):
            if option.get("nullable") and option.get("type") == "object" and len(option) <= 3:
                continue  # apispec's "or null" of a nullable nested object
            found += _unbounded(document, option, f"{where}<{key}{index}>")
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and "maxLength" not in schema:
        found.append(where)
    if kind == "integer" and "maximum" not in schema:
        found.append(where)
    if kind == "array":
        if "maxItems" not in schema:
            found.append(where)
        found += _unbounded(document, schema.get("items", {}), f"{where}[]")
    if kind == "object" or "properties" in schema:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in schema:
                found.append(where)
            found += _unbounded(document, extra, f"{where}{{}}")
        for name, prop in schema.get("properties", {}).items():
            found += _unbounded(document, prop, f"{where}.{name}")
    return found


def test_the_document_states_a_maximum_for_every_field_a_client_sends(
    client: FlaskClient,
) -> None:
    document = client.get("/openapi.json").json
    spec = document["components"]["schemas"]["JobSpec"]
    assert _unbounded(document, spec, "JobSpec") == []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    where = f"{method.upper()} {path} ?{parameter['name']}"
                    assert _unbounded(document, parameter["schema"], where) == []
