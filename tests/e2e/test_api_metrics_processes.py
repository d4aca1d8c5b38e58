"""``/metrics`` of the real API servers: ``python -m service serve`` and gunicorn with
deploy/gunicorn.conf.py, each with two gunicorn workers.

Both must keep their request and storage-error metrics in prometheus_client's multiprocess
directory (so one scrape sums every worker), which only works where the directory is set before
anything imports prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from service.metrics.api import STORAGE_ERROR_PLACES
from tests.helpers.net import free_port
from tests.helpers.processes import embedded_service, gunicorn_api

pytestmark = pytest.mark.slow

REQUESTS = 12


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture(params=["serve", "gunicorn", "gunicorn-named-dir"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """The API of one kind of server, and the directory holding its metrics' files.

    Without ``PROMETHEUS_MULTIPROC_DIR`` (``make serve``, a plain gunicorn) the server makes a
    temporary one: under this test's ``TMPDIR``, where the test finds it. The named case is a
    Kubernetes ``emptyDir``: set, not yet created.
    """
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {
        "FINETUNE_STATE_URI": f"file://{tmp_path / 'state'}",
        "FINETUNE_WORK_DIR": str(tmp_path / "work"),
        # serve's own worker: no trainer process waiting (this test runs no job).
        "FINETUNE_WARM_TRAINER": "0",
        "TMPDIR": str(temporary),
    }
    if request.param == "gunicorn-named-dir":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    port = free_port()
    if request.param == "serve":
        process = embedded_service(port, env, tmp_path)
    else:
        process = gunicorn_api(port, env, tmp_path, workers=2)
    try:
        made = list(temporary.glob("finetune-metrics-*"))
        yield f"http://127.0.0.1:{port}", made[0] if made else tmp_path / "metrics"
    finally:
        process.stop()


def test_metrics_sum_every_gunicorn_worker(server: tuple[str, Path]) -> None:
    url, metrics_dir = server
    assert metrics_dir.is_dir()
    for _ in range(REQUESTS):  # one connection each: spread over both workers
        assert requests.get(f"{url}/v1/jobs/ftj_none", timeout=10).status_code == 404
    samples = _samples(requests.get(f"{url}/metrics", timeout=10).text)
    missing = (
        "finetune_api_request_duration_seconds_count",
        (("method", "GET"), ("route", "/v1/jobs/<string:job_id>"), ("status", "404")),
    )
    assert samples.get(missing) == REQUESTS, sorted(samples)
    for where in STORAGE_ERROR_PLACES:
        series = ("finetune_storage_errors_total", (("process", "api"), ("where", where)))
        assert samples.get(series) == 0, sorted(samples)
    # The values came from the workers' files in the shared directory, not from one process.
    assert list(metrics_dir.glob("histogram_*.db")), list(metrics_dir.iterdir())
    assert list(metrics_dir.glob("counter_*.db")), list(metrics_dir.iterdir())
