"""The /v1/jobs endpoints through the real app (local job store)."""

from __future__ import annotations

import subprocess
import sys

from flask.testing import FlaskClient

from tests.helpers.specs import raw_spec


def test_create_returns_201_location_and_the_job_with_defaults(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json=raw_spec(name="flowers", labels={"team": "vision"}))
    assert response.status_code == 201
    job = response.json
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["progress"]["phase"] == "queued"
    assert job["spec"]["training"]["optimizer"] == "adam"
    assert job["spec"]["dataset"]["validation_split"] == 0.2
    assert job["result"] is None and job["error"] is None
    assert "tenant" not in job and "version" not in job
    fetched = client.get(response.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.json["id"] == job["id"]


def test_a_queued_job_counts_the_epochs_it_will_train(client: FlaskClient) -> None:
    """progress.epochs is the plan's total (all phases) from the start, not 0 until an epoch."""
    one = client.post("/v1/jobs", json=raw_spec(training={"epochs": 7})).json
    phased = raw_spec(schedule=[{"epochs": 2, "freeze": "base"}, {"epochs": 3, "freeze": "none"}])
    two = client.post("/v1/jobs", json=phased)

    assert two.status_code == 201, two.json
    assert one["progress"] == {"phase": "queued", "epoch": 0, "epochs": 7, "percent": 0.0}
    assert client.get(f"/v1/jobs/{two.json['id']}").json["progress"]["epochs"] == 5


def test_list_filters_and_pages(client: FlaskClient) -> None:
    ids = [
        client.post("/v1/jobs", json=raw_spec(labels={"ci_run": str(i % 2)})).json["id"]
        for i in range(5)
    ]
    client.post(f"/v1/jobs/{ids[0]}/cancel")
    page = client.get("/v1/jobs?limit=2").json
    assert len(page["jobs"]) == 2 and page["next_cursor"]
    assert page["jobs"][0]["id"] == max(ids)
    rest = client.get(f"/v1/jobs?limit=10&cursor={page['next_cursor']}").json
    assert len(rest["jobs"]) == 3 and rest["next_cursor"] is None
    assert {j["id"] for j in client.get("/v1/jobs?label=ci_run=0").json["jobs"]} == {
        ids[0],
        ids[2],
        ids[4],
    }
    cancelled = client.get("/v1/jobs?status=cancelled").json["jobs"]
    assert [j["id"] for j in cancelled] == [ids[0]]


def test_cancel_queued_then_409(client: FlaskClient) -> None:
    job_id = client.post("/v1/jobs", json=raw_spec()).json["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.json["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "already finished" in again.json["message"]


def test_events_after(client: FlaskClient) -> None:
    job_id = client.post("/v1/jobs", json=raw_spec()).json["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    events = client.get(f"/v1/jobs/{job_id}/events").json["events"]
    assert [e["type"] for e in events] == ["created", "cancelled"]
    assert [e["seq"] for e in events] == [1, 2]
    newer = client.get(f"/v1/jobs/{job_id}/events?after=1").json["events"]
    assert [e["seq"] for e in newer] == [2]


def test_health_ready_and_openapi(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/events",
    ):
        assert path in paths
    spec_schema = spec["components"]["schemas"]["JobSpec"]
    assert set(spec_schema["required"]) == {"base_model", "dataset", "output"}


def test_api_process_never_imports_tensorflow() -> None:
    code = (
        "import sys, tempfile\n"
        "from service.app import create_app\n"
        "from service.config import Config\n"
        "d = tempfile.mkdtemp()\n"
        "app = create_app(Config(state_uri='file://' + d))\n"
        "client = app.test_client()\n"
        "assert client.get('/openapi.json').status_code == 200\n"
        "import service.worker, service.api.jobs\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
