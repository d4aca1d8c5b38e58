"""Every bad request gets a JSON error naming what is wrong, and never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from marshmallow import Schema, fields

from schemas import JobSpecSchema
from schemas.strict import StrictBoolean, StrictFloat, StrictInteger
from tests.helpers.errors import field_messages
from tests.helpers.specs import raw_spec


def _assert_error_body(body: dict[str, Any], code: int) -> None:
    assert body["code"] == code
    assert body["status"]
    assert body["message"]
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({k: v for k, v in raw_spec().items() if k != "output"}, ["output"]),
        (raw_spec(training={"epochs": "ten"}), ["training", "epochs"]),
        (raw_spec(surprise=True), ["surprise"]),
        (raw_spec(training={"epochs": 0}), ["training", "epochs"]),
        (raw_spec(training={"learning_rate": -1}), ["training", "learning_rate"]),
        (raw_spec(base_model={"uri": "http://example.com/model.keras"}), ["base_model", "uri"]),
        (
            raw_spec(dataset={"train": "s3://d/t/", "validation_split": 2}),
            ["dataset", "validation_split"],
        ),
        (raw_spec(freeze={"first_n": -1}), ["freeze"]),
        (raw_spec(freeze="half"), ["freeze"]),
        (raw_spec(head={"pooling": "median"}), ["head", "pooling"]),
        (raw_spec(output={"uri": "s3://bucket/not-a-prefix"}), ["output", "uri"]),
        (raw_spec(dataset={"train": "file:///data/train/"}), ["dataset", "train"]),
    ],
    ids=[
        "missing-required",
        "wrong-type",
        "unknown-field",
        "epochs-below-1",
        "negative-learning-rate",
        "unsupported-scheme",
        "split-out-of-range",
        "freeze-first-n-negative",
        "freeze-unknown-word",
        "bad-pooling",
        "output-not-prefix",
        "file-scheme-not-enabled",
    ],
)
def test_bad_spec_is_422_naming_the_field(
    client: FlaskClient, body: dict[str, Any], path: list[str]
) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.json
    _assert_error_body(response.json, 422)
    errors = response.json["errors"]["json"]
    for part in path:
        errors = errors[part]
    assert errors  # the named field carries a message
    assert client.get("/v1/jobs").json["jobs"] == []  # nothing was queued


def test_error_message_says_what_is_wrong(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json=raw_spec(training={"epochs": 0}))
    assert response.json["errors"]["json"]["training"]["epochs"] == [
        "Must be greater than or equal to 1 and less than or equal to 1000."
    ]


@pytest.mark.parametrize(
    "payload,content_type",
    [
        (b"{not json", "application/json"),
        (b"base_model=x", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/json"),
    ],
)
def test_body_that_is_not_json_is_400(
    client: FlaskClient, payload: bytes, content_type: str
) -> None:
    response = client.post("/v1/jobs", data=payload, content_type=content_type)
    assert response.status_code == 400
    _assert_error_body(response.json, 400)


def test_unknown_job_is_404(client: FlaskClient) -> None:
    for url in (
        "/v1/jobs/ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ",
        "/v1/jobs/nonsense",
        "/v1/jobs/ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ/events",
    ):
        response = client.get(url)
        assert response.status_code == 404
        _assert_error_body(response.json, 404)
    response = client.post("/v1/jobs/ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ/cancel")
    assert response.status_code == 404


def test_bad_query_arguments_are_422(client: FlaskClient) -> None:
    for query, field in (
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=done", "status"),
        ("label=novalue", "label"),
        ("cursor=garbage", "cursor"),
    ):
        response = client.get(f"/v1/jobs?{query}")
        assert response.status_code == 422, query
        assert field in response.json["errors"]["query"]


def test_unknown_route_and_method_are_json(client: FlaskClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    _assert_error_body(response.json, 404)
    response = client.delete("/v1/jobs")
    assert response.status_code == 405
    _assert_error_body(response.json, 405)


def test_oversized_body_is_413(client: FlaskClient) -> None:
    body = raw_spec(name="x" * (2 * 1024 * 1024))
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 413
    _assert_error_body(response.json, 413)


def _fields(schema: Schema, path: str = "") -> Iterator[tuple[str, fields.Field[Any]]]:
    """Every leaf field of ``schema``, nested schemas and list items included, by dotted path."""
    for name, field in schema.fields.items():
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested) and isinstance(inner.schema, Schema):
            yield from _fields(inner.schema, f"{path}{name}.")
        else:
            yield f"{path}{name}", inner


def _numeric_fields(schema: Schema) -> Iterator[tuple[str, fields.Field[Any]]]:
    return ((name, field) for name, field in _fields(schema) if isinstance(field, fields.Number))


def test_every_number_of_the_spec_takes_only_json_numbers() -> None:
    numeric = dict(_numeric_fields(JobSpecSchema()))
    assert "training.epochs" in numeric and "training.learning_rate" in numeric
    loose = [
        n for n, field in numeric.items() if not isinstance(field, StrictInteger | StrictFloat)
    ]
    assert not loose, "a string would be converted silently"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (raw_spec(training={"epochs": "8"}), ["training", "epochs"]),
        (raw_spec(training={"epochs": 8.0}), ["training", "epochs"]),
        (raw_spec(training={"batch_size": True}), ["training", "batch_size"]),
        (raw_spec(training={"learning_rate": "0.001"}), ["training", "learning_rate"]),
        (raw_spec(head={"hidden_units": ["32"]}), ["head", "hidden_units", "0"]),
        (raw_spec(schedule=[{"epochs": "2"}]), ["schedule", "0", "epochs"]),
        (raw_spec(limits={"max_runtime_seconds": "60"}), ["limits", "max_runtime_seconds"]),
    ],
    ids=["int-string", "int-float", "int-bool", "float-string", "list-item", "phase", "limit"],
)
def test_a_string_or_a_fraction_where_a_number_is_due_is_422(
    client: FlaskClient, body: dict[str, Any], path: list[str]
) -> None:
    assert "write a JSON" in field_messages(client, body, path)[0]


def test_every_boolean_of_the_spec_takes_only_json_booleans() -> None:
    booleans = [
        name for name, field in _fields(JobSpecSchema()) if isinstance(field, fields.Boolean)
    ]
    assert "early_stopping.restore_best_weights" in "|".join(booleans), booleans
    assert all(
        isinstance(field, StrictBoolean)
        for _, field in _fields(JobSpecSchema())
        if isinstance(field, fields.Boolean)
    )


@pytest.mark.parametrize("value", ["yes", "true", 1, 0], ids=["yes", "string-true", "one", "zero"])
def test_a_string_or_a_number_where_a_boolean_is_due_is_422(
    client: FlaskClient, value: Any
) -> None:
    body = raw_spec(training={"optimizer": "sgd", "momentum": 0.9, "nesterov": value})
    assert "write true or false" in field_messages(client, body, ["training", "nesterov"])[0]
    body = raw_spec(output={"uri": "s3://models/x/", "overwrite": value})
    assert "write true or false" in field_messages(client, body, ["output", "overwrite"])[0]


def test_json_integers_still_count_as_numbers(client: FlaskClient) -> None:
    body = raw_spec(
        training={"epochs": 2, "learning_rate": 1},
        dataset={"train": "s3://data/digits/train/", "validation_split": 0},
    )
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.json
    assert response.json["spec"]["training"]["learning_rate"] == 1.0


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (raw_spec(training={"epoch": 3}), ["training", "epoch"], "Did you mean 'epochs'?"),
        (raw_spec(trainig={}), ["trainig"], "Did you mean 'training'?"),
        (raw_spec(schedule=[{"epochs": 1, "lr": 0.1}]), ["schedule", "0", "lr"], "Known fields:"),
    ],
)
def test_an_unknown_field_names_the_close_known_ones(
    client: FlaskClient, body: dict[str, Any], path: list[str], words: str
) -> None:
    messages = field_messages(client, body, path)
    assert messages[0].startswith("Unknown field.") and words in messages[0], messages
