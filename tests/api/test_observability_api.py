"""/metrics parsed as Prometheus text, webhook URLs checked at submit, OpenAPI examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.config import Config
from tests.helpers.specs import raw_spec


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_jobs_by_status_and_queue_and_time_requests(tmp_path: Path) -> None:
    client = create_app(
        Config(state_uri=f"file://{tmp_path / 'state'}", metrics_cache_seconds=0)
    ).test_client()
    # Request metrics belong to the process (other tests' requests count too): compare counts.
    before = _samples(client.get("/metrics").get_data(as_text=True))
    for _ in range(2):
        assert client.post("/v1/jobs", json=raw_spec()).status_code == 201
    assert client.get("/v1/jobs/ftj_nope").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = _samples(response.get_data(as_text=True))
    assert samples[("finetune_jobs", (("status", "queued"),))] == 2
    assert samples[("finetune_jobs", (("status", "succeeded"),))] == 0
    assert samples[("finetune_queue_depth", ())] == 2
    assert samples[("finetune_job_store_up", ())] == 1
    assert samples[("finetune_queue_oldest_age_seconds", ())] >= 0
    created = (
        "finetune_api_request_duration_seconds_count",
        (("method", "POST"), ("route", "/v1/jobs"), ("status", "201")),
    )
    assert samples[created] - before.get(created, 0) == 2
    missing = (
        "finetune_api_request_duration_seconds_count",
        (("method", "GET"), ("route", "/v1/jobs/<string:job_id>"), ("status", "404")),
    )
    assert samples[missing] - before.get(missing, 0) == 1, "the route label is the URL rule"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/hook",
        "http://192.168.1.20/hook",
    ],
)
def test_webhook_to_a_private_literal_address_is_refused(client: FlaskClient, url: str) -> None:
    response = client.post("/v1/jobs", json=raw_spec(notify={"webhook_url": url}))
    assert response.status_code == 422
    (message,) = response.json["errors"]["json"]["notify"]["webhook_url"]
    assert "FINETUNE_WEBHOOK_ALLOW_PRIVATE" in message
    assert client.get("/v1/jobs").json["jobs"] == [], "nothing may be queued"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/hook", "http://"),
        ("https://user:pw@example.com/hook", "Credentials"),
        ("https:///hook", "no host"),
        ("not a url", "http://"),
    ],
)
def test_malformed_webhook_urls_are_refused(client: FlaskClient, url: str, words: str) -> None:
    response = client.post("/v1/jobs", json=raw_spec(notify={"webhook_url": url}))
    assert response.status_code == 422
    assert words in response.json["errors"]["json"]["notify"]["webhook_url"][0]


def test_public_webhook_url_is_accepted_and_kept_in_the_spec(client: FlaskClient) -> None:
    url = "https://ci.example.com/hooks/finetune?run=4812"
    response = client.post("/v1/jobs", json=raw_spec(notify={"webhook_url": url}))
    assert response.status_code == 201, response.json
    assert response.json["spec"]["notify"] == {"webhook_url": url}


def test_openapi_document_carries_examples_and_the_additions(client: FlaskClient) -> None:
    spec: dict[str, Any] = client.get("/openapi.json").json
    post = spec["paths"]["/v1/jobs"]["post"]
    body_examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert body_examples["classic"]["value"]["notify"]["webhook_url"].startswith("https://")
    assert "example" in post["responses"]["201"]["content"]["application/json"]
    assert post["responses"]["422"]["content"]["application/json"]["example"]["code"] == 422
    get_one = spec["paths"]["/v1/jobs/{job_id}"]["get"]
    job_examples = get_one["responses"]["200"]["content"]["application/json"]["examples"]
    assert job_examples["running"]["value"]["lease"]["worker"]
    assert job_examples["gate_failed"]["value"]["error"]["code"] == "gate_failed"
    schemas = spec["components"]["schemas"]
    assert "webhook_url" in schemas["Notify"]["properties"]
    assert "heartbeat_at" in schemas["Lease"]["properties"]
    assert "history_plot_uri" in schemas["Result"]["properties"]
