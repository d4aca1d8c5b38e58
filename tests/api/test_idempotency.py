"""Idempotency-Key on POST /v1/jobs (one app; the two-replica race is in tests/e2e)."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.helpers.specs import raw_spec


def test_same_key_same_body_returns_the_first_job(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "ci-run-4812"}
    first = client.post("/v1/jobs", json=raw_spec(name="a"), headers=headers)
    again = client.post("/v1/jobs", json=raw_spec(name="a"), headers=headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json["id"] == first.json["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert len(client.get("/v1/jobs").json["jobs"]) == 1


def test_same_key_other_body_is_409(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "ci-run-4813"}
    first = client.post("/v1/jobs", json=raw_spec(name="a"), headers=headers)
    other = client.post("/v1/jobs", json=raw_spec(name="b"), headers=headers)
    assert other.status_code == 409
    assert first.json["id"] in other.json["message"]
    assert len(client.get("/v1/jobs").json["jobs"]) == 1


def test_keys_are_separate_and_absent_key_always_creates(client: FlaskClient) -> None:
    a = client.post("/v1/jobs", json=raw_spec(), headers={"Idempotency-Key": "k1"}).json["id"]
    b = client.post("/v1/jobs", json=raw_spec(), headers={"Idempotency-Key": "k2"}).json["id"]
    c = client.post("/v1/jobs", json=raw_spec()).json["id"]
    d = client.post("/v1/jobs", json=raw_spec()).json["id"]
    assert len({a, b, c, d}) == 4


def test_overlong_key_is_400(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json=raw_spec(), headers={"Idempotency-Key": "k" * 300})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json["message"]
