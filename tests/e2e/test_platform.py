"""What users see around the API, against the real thing: the API under gunicorn (2 workers),
a worker process, a webhook receiver on loopback, and the ``finetune`` CLI as a subprocess.

One real job (tiny CNN, 2 epochs) is shared by several checks: the CLI's ``--wait`` output in a
non-terminal, ``--json``, the signed webhook and its retry, ``/metrics`` of the API and of the
worker, history.png and TensorBoard files, and JSON logs carrying the job id.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from service.webhooks import verify
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.net import free_port, wait_for_http
from tests.helpers.processes import REPO, ServiceProcess, gunicorn_api, worker_process
from tests.helpers.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

SECRET = "platform-test-secret"


@dataclass
class Platform:
    """The running service and what the tests need to reach it."""

    url: str
    worker_metrics_url: str
    receiver: WebhookReceiver
    root: Path
    model: Path
    train: Path
    api: ServiceProcess
    worker: ServiceProcess

    def spec(self, out: str, **overrides: Any) -> dict[str, Any]:
        """A tiny job: new head on the pretrained CNN, 2 epochs."""
        spec: dict[str, Any] = {
            "name": "platform-check",
            "base_model": {"uri": f"file://{self.model}"},
            "dataset": {"train": f"file://{self.train}/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap"},
            "freeze": "base",
            "training": {"epochs": 2, "batch_size": 16, "learning_rate": 0.01, "seed": 3},
            "output": {"uri": f"file://{self.root / out}/"},
        }
        spec.update(overrides)
        return spec

    def write_spec(self, name: str, spec: dict[str, Any]) -> Path:
        """The spec as a YAML file, as a CI repository would keep it."""
        path = self.root / name
        path.write_text(yaml.safe_dump(spec))
        return path

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        """``finetune ARGS`` with FINETUNE_URL set, output captured (not a terminal)."""
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "FINETUNE_URL": self.url, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def job(self, job_id: str) -> dict[str, Any]:
        """GET the job."""
        body: dict[str, Any] = requests.get(f"{self.url}/v1/jobs/{job_id}", timeout=10).json()
        return body

    def logs(self) -> str:
        """The API's and the worker's logs, for failure messages."""
        return f"--- api\n{self.api.log()[-4000:]}\n--- worker\n{self.worker.log()[-8000:]}"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """API + worker + webhook receiver, started once for the module."""
    root = tmp_path_factory.mktemp("platform")
    model = root / "model.keras"
    pretrain_tiny_cnn(model, epochs=3, per_class=40)
    train = write_image_folder(root / "train", ["a", "b", "c"], per_class=20, digits=[0, 1, 2])
    metrics_port = free_port()
    env = {
        "FINETUNE_STATE_URI": f"file://{root / 'state'}",
        "FINETUNE_WORK_DIR": str(root / "work"),
        "FINETUNE_POLL_SECONDS": "0.2",
        "FINETUNE_HEARTBEAT_SECONDS": "1",
        "FINETUNE_WEBHOOK_SECRET": SECRET,
        "FINETUNE_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on loopback
        "FINETUNE_WEBHOOK_BACKOFF_SECONDS": "0.3",
        "FINETUNE_WORKER_METRICS_PORT": str(metrics_port),
        "FINETUNE_METRICS_CACHE_SECONDS": "0",
        "FINETUNE_LOG_FORMAT": "json",
    }
    port = free_port()
    with WebhookReceiver(fail_first=1) as receiver:
        api = gunicorn_api(port, env, root, workers=2)
        worker = worker_process("worker", env, root)
        try:
            wait_for_http(f"http://127.0.0.1:{metrics_port}/metrics", timeout=60)
            yield Platform(
                f"http://127.0.0.1:{port}",
                f"http://127.0.0.1:{metrics_port}/metrics",
                receiver,
                root,
                model,
                train,
                api,
                worker,
            )
        finally:
            worker.stop()
            api.stop()


@dataclass
class Finished:
    """The CLI run that submitted and waited, and the job it produced."""

    run: subprocess.CompletedProcess[str]
    job: dict[str, Any]


@pytest.fixture(scope="module")
def succeeded(platform: Platform) -> Finished:
    """One real job through ``finetune submit --wait``: gate passes, webhook named."""
    spec = platform.spec(
        "out-ok",
        gate={"metric": "accuracy", "min": 0.0},
        notify={"webhook_url": platform.receiver.url("/hooks/finetune")},
    )
    path = platform.write_spec("ok.yaml", spec)
    run = platform.cli("submit", str(path), "--wait", "--interval", "0.3", "--label", "ci_run=77")
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{platform.logs()}"
    job_id = run.stderr.split("Submitted ", 1)[1].split(";", 1)[0]
    return Finished(run, platform.job(job_id))


def test_submit_wait_prints_plain_progress_lines_and_exits_0(succeeded: Finished) -> None:
    job, run = succeeded.job, succeeded.run
    assert job["status"] == "succeeded"
    assert job["labels"] == {"ci_run": "77"}
    assert "\r" not in run.stderr and "\x1b" not in run.stderr, "no terminal codes in a CI log"
    lines = run.stderr.splitlines()
    assert any("running training epoch 1/2" in line for line in lines) or any(
        "Epoch 1/2" in line for line in lines
    ), run.stderr
    assert any("[succeeded]" in line for line in lines), run.stderr
    assert any(f"{job['id']} succeeded" in line and "(100.0%)" in line for line in lines)
    assert run.stdout.startswith(f"{job['id']} succeeded: loss ")


def test_json_output_of_status_list_events_and_wait(
    platform: Platform, succeeded: Finished
) -> None:
    job_id = succeeded.job["id"]
    status = platform.cli("status", job_id, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["id"] == job_id
    listing = platform.cli("list", "--label", "ci_run=77", "--json")
    assert [job["id"] for job in json.loads(listing.stdout)["jobs"]] == [job_id]
    events = platform.cli("events", job_id, "--json")
    types = [event["type"] for event in json.loads(events.stdout)["events"]]
    assert {"created", "claimed", "epoch", "published", "succeeded"} <= set(types)
    wait = platform.cli("wait", job_id, "--json")
    assert wait.returncode == 0 and json.loads(wait.stdout)["status"] == "succeeded"
    human = platform.cli("status", job_id)
    assert "history_plot_uri" in human.stdout and "succeeded" in human.stdout


def test_webhook_is_signed_and_retried_after_a_failed_attempt(
    platform: Platform, succeeded: Finished
) -> None:
    first, second = platform.receiver.wait_for(2)
    assert (first.answered, second.answered) == (500, 200)
    assert second.path == "/hooks/finetune"
    assert verify(SECRET.encode(), second.headers, second.body)
    assert not verify(b"wrong-secret", second.headers, second.body)
    payload = json.loads(second.body)
    assert payload["type"] == "job.finished"
    assert payload["job"]["id"] == succeeded.job["id"]
    assert payload["job"]["status"] == "succeeded"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = requests.get(
            f"{platform.url}/v1/jobs/{succeeded.job['id']}/events", timeout=10
        ).json()["events"]
        webhook = [event for event in events if event["type"] == "webhook"]
        if webhook:
            break
        time.sleep(0.2)
    assert webhook and webhook[0]["data"]["delivered"] and webhook[0]["data"]["attempts"] == 2


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_of_the_api_and_the_worker_after_a_job(
    platform: Platform, succeeded: Finished
) -> None:
    job_id = succeeded.job["id"]
    for _ in range(6):  # spread over both gunicorn workers
        assert requests.get(f"{platform.url}/v1/jobs/{job_id}", timeout=10).status_code == 200
    api = _samples(requests.get(f"{platform.url}/metrics", timeout=10).text)
    assert api[("finetune_jobs", (("status", "succeeded"),))] >= 1
    assert ("finetune_queue_depth", ()) in api
    route = (
        "finetune_api_request_duration_seconds_count",
        (("method", "GET"), ("route", "/v1/jobs/<string:job_id>"), ("status", "200")),
    )
    # Summed over the gunicorn workers (multiprocess mode): every request is counted.
    assert api[route] >= 6

    worker = _samples(requests.get(platform.worker_metrics_url, timeout=10).text)
    assert worker[("finetune_job_duration_seconds_count", (("status", "succeeded"),))] >= 1
    assert worker[("finetune_epochs_total", ())] >= 2
    assert worker[("finetune_epoch_duration_seconds_count", ())] >= 2
    assert worker[("finetune_jobs_finished_total", (("error_code", ""), ("status", "succeeded")))]
    deadline = time.monotonic() + 20
    while worker.get(("finetune_webhook_deliveries_total", (("outcome", "delivered"),))) != 1:
        assert time.monotonic() < deadline, worker
        time.sleep(0.2)
        worker = _samples(requests.get(platform.worker_metrics_url, timeout=10).text)


def test_history_plot_and_tensorboard_files_beside_the_model(
    platform: Platform, succeeded: Finished
) -> None:
    out = platform.root / "out-ok"
    result = succeeded.job["result"]
    assert result["history_plot_uri"] == f"file://{out}/history.png"
    assert result["tensorboard_uri"] == f"file://{out}/tensorboard/"
    png = (out / "history.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 600 and height >= 300
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in ("train", "validation"):
        files = list((out / "tensorboard" / run).glob("events.out.tfevents.*"))
        assert files, f"no TensorBoard events for {run}"
        events = EventAccumulator(str(out / "tensorboard" / run)).Reload()
        tags = events.Tags()["tensors"] + events.Tags()["scalars"]
        assert "epoch_loss" in tags, tags
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["history_plot_uri"] == result["history_plot_uri"]


def test_worker_logs_are_json_with_the_job_id_on_every_line_of_the_job(
    platform: Platform, succeeded: Finished
) -> None:
    job_id = succeeded.job["id"]
    entries = []
    for line in platform.worker.log().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # TensorFlow's C++ start-up lines in the trainer child are not ours
    assert entries, platform.worker.log()[-3000:]
    about_job = [entry for entry in entries if job_id in entry["message"]]
    assert len(about_job) >= 2
    assert all(entry["job_id"] == job_id for entry in about_job), about_job
    during = [entry for entry in entries if entry.get("job_id") == job_id]
    assert {entry["logger"] for entry in during} >= {"service.worker.child_runner"}
    assert any(entry["logger"] == "service.webhooks.sender" for entry in during)


def test_exit_codes_for_failed_and_gate_failed_jobs(
    platform: Platform, succeeded: Finished
) -> None:
    missing = platform.spec("out-missing", base_model={"uri": f"file://{platform.root}/no.keras"})
    run = platform.cli("submit", str(platform.write_spec("missing.yaml", missing)), "--wait")
    assert run.returncode == 2, run.stderr  # refused at submit: nothing queued
    assert "base_model.uri: no file at" in run.stderr

    (platform.root / "broken.keras").write_bytes(b"not a model")
    broken = platform.spec("out-broken", base_model={"uri": f"file://{platform.root}/broken.keras"})
    run = platform.cli("submit", str(platform.write_spec("broken.yaml", broken)), "--wait")
    assert run.returncode == 1, run.stderr
    assert "failed (invalid_model)" in run.stdout

    gated = platform.spec(
        "out-gated",
        training={"epochs": 1, "batch_size": 16, "learning_rate": 0.01, "seed": 3},
        gate={"metric": "accuracy", "min": 1.01},
    )
    path = platform.root / "gated.json"
    path.write_text(json.dumps(gated))
    run = platform.cli("submit", str(path), "--wait", "--json", "--interval", "0.3")
    assert run.returncode == 3, f"{run.stdout}\n{run.stderr}"
    job = json.loads(run.stdout)
    assert job["error"]["code"] == "gate_failed"
    assert not (platform.root / "out-gated").exists(), "nothing is published past a failed gate"


def test_exit_codes_for_a_wait_timeout_and_a_cancelled_job(
    platform: Platform, succeeded: Finished
) -> None:
    long = platform.spec(
        "out-long", training={"epochs": 500, "batch_size": 16, "learning_rate": 0.01}
    )
    run = platform.cli("submit", str(platform.write_spec("long.yaml", long)))
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    assert job_id.startswith("ftj_")
    deadline = time.monotonic() + 120
    while platform.job(job_id)["progress"]["epoch"] < 1:
        assert time.monotonic() < deadline, platform.logs()
        time.sleep(0.3)

    timed_out = platform.cli("wait", job_id, "--timeout", "1.5", "--interval", "0.3")
    assert timed_out.returncode == 5, timed_out.stderr
    assert "Gave up waiting after 1.5 s" in timed_out.stderr

    cancel = platform.cli("cancel", job_id)
    assert cancel.returncode == 0 and "cancel requested" in cancel.stdout
    cancelled = platform.cli("wait", job_id, "--timeout", "120", "--interval", "0.3")
    assert cancelled.returncode == 4, f"{cancelled.stdout}\n{cancelled.stderr}"
    assert platform.job(job_id)["status"] == "cancelled"
    again = platform.cli("cancel", job_id)
    assert again.returncode == 2 and "HTTP 409" in again.stderr


def test_exit_code_2_for_client_side_errors(platform: Platform) -> None:
    missing_file = platform.cli("submit", str(platform.root / "nope.yaml"))
    assert missing_file.returncode == 2 and "no such file" in missing_file.stderr

    invalid = platform.spec("out-x", training={"epochs": 0})
    run = platform.cli("submit", str(platform.write_spec("invalid.yaml", invalid)))
    assert run.returncode == 2
    assert "HTTP 422" in run.stderr and "training.epochs:" in run.stderr

    unknown = platform.cli("status", "ftj_01AAAAAAAAAAAAAAAAAAAAAAAA")
    assert unknown.returncode == 2 and "HTTP 404" in unknown.stderr

    nobody = subprocess.run(
        [sys.executable, "-m", "service.cli", "list", "--url", f"http://127.0.0.1:{free_port()}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert nobody.returncode == 2 and "Cannot reach the service" in nobody.stderr


def test_validate_calls_the_dry_run_endpoint(platform: Platform) -> None:
    spec = platform.write_spec("validate.yaml", platform.spec("out-v"))
    run = platform.cli("validate", str(spec))
    paths = requests.get(f"{platform.url}/openapi.json", timeout=10).json()["paths"]
    if "/v1/jobs/validate" in paths:  # issue 3's endpoint is there
        assert run.returncode == 0, run.stderr
    else:
        assert run.returncode == 2
        assert "no POST /v1/jobs/validate" in run.stderr
    bad = platform.write_spec("validate-bad.yaml", platform.spec("out-v", training={"epochs": 0}))
    assert platform.cli("validate", str(bad)).returncode == 2
