"""``resources.gpus`` through the real API: its default, its floor, and the service's maximum."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Config
from service.context import Services
from service.jobs.workers import WorkerCapacity, WorkerRegistry
from tests.helpers.errors import field_messages
from tests.helpers.specs import raw_spec


def test_a_job_uses_one_device_unless_it_asks_for_more(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json=raw_spec())

    assert response.status_code == 201, response.json
    assert response.json["spec"]["resources"] == {"gpus": 1}


def test_a_job_may_ask_for_several_devices(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json=raw_spec(resources={"gpus": 8}))

    assert response.status_code == 201, response.json
    assert response.json["spec"]["resources"] == {"gpus": 8}


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        (0, "Must be greater than or equal to 1 and less than or equal to 64."),
        (65, "Must be greater than or equal to 1 and less than or equal to 64."),
        ("2", "write a JSON integer"),
        (2.5, "write a JSON integer"),
    ],
)
def test_a_bad_device_count_is_a_422_naming_the_field(
    client: FlaskClient, gpus: object, expected: str
) -> None:
    messages = field_messages(client, raw_spec(resources={"gpus": gpus}), ["resources", "gpus"])

    assert any(expected in message for message in messages), messages


def test_more_devices_than_the_service_allows_is_a_422_saying_the_maximum(
    client: FlaskClient,
) -> None:
    for path in ("/v1/jobs", "/v1/jobs/validate"):
        body = raw_spec(resources={"gpus": 9}, training={"batch_size": 36})
        response = client.post(path, json=body)

        assert response.status_code == 422, response.json
        (message,) = response.json["errors"]["json"]["resources"]["gpus"]
        assert "At most 8 devices per job" in message


def test_the_maximum_is_a_setting(tmp_path: Path) -> None:
    config = Config.from_env(
        {
            "FINETUNE_STATE_URI": f"file://{tmp_path / 'state'}",
            "FINETUNE_WORK_DIR": str(tmp_path / "work"),
            "FINETUNE_MAX_GPUS_PER_JOB": "2",
        }
    )
    client = create_app(config).test_client()

    assert client.post("/v1/jobs", json=raw_spec(resources={"gpus": 2})).status_code == 201
    body = raw_spec(resources={"gpus": 3}, training={"batch_size": 30})
    messages = field_messages(client, body, ["resources", "gpus"])
    assert messages == ["At most 2 devices per job on this service; ask for 2 or fewer."]


def test_the_openapi_document_shows_the_field(client: FlaskClient) -> None:
    components = client.get("/openapi.json").json["components"]["schemas"]

    gpus = components["Resources"]["properties"]["gpus"]
    assert (gpus["default"], gpus["minimum"], gpus["maximum"]) == (1, 1, 64)
    assert "MirroredStrategy" in gpus["description"]
    assert components["JobSpec"]["properties"]["resources"]["$ref"].endswith("/Resources")


def test_the_batch_must_split_evenly_across_the_devices(client: FlaskClient) -> None:
    body = raw_spec(resources={"gpus": 4}, training={"batch_size": 30})

    messages = field_messages(client, body, ["training", "batch_size"])

    assert messages == [
        "Must be a multiple of resources.gpus (4): each step's batch is split evenly across "
        "the devices. Use e.g. 28 or 32."
    ]
    even = raw_spec(resources={"gpus": 4}, training={"batch_size": 32})
    assert client.post("/v1/jobs", json=even).status_code == 201


def _waiting(client: FlaskClient, job_id: str) -> list[dict[str, object]]:
    events = client.get(f"/v1/jobs/{job_id}/events").json["events"]
    return [event for event in events if event["type"] == "waiting"]


def test_a_job_no_running_worker_can_hold_is_said_to_wait_at_submit(app: Flask) -> None:
    client = app.test_client()
    nobody = client.post("/v1/jobs", json=raw_spec(resources={"gpus": 2})).json
    (waiting,) = _waiting(client, nobody["id"])
    assert waiting["data"] == {"devices": 2, "most_held": 0}
    assert "no worker is running" in waiting["message"]

    services: Services = app.extensions["finetune"]
    registry = WorkerRegistry(services.jobs.store, services.jobs.prefix)
    registry.publish(WorkerCapacity("w-4", 4, "gpu"))
    held = client.post("/v1/jobs", json=raw_spec(resources={"gpus": 4})).json
    too_big = client.post("/v1/jobs", json=raw_spec(resources={"gpus": 8})).json
    one = client.post("/v1/jobs", json=raw_spec()).json

    assert _waiting(client, held["id"]) == [] and _waiting(client, one["id"]) == []
    (waiting,) = _waiting(client, too_big["id"])
    assert waiting["data"] == {"devices": 8, "most_held": 4}
