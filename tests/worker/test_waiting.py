"""A worker that sees a queued job no running worker can hold says so in the job's events, once
(the API says it at submit where it can; tests/api/test_resources.py)."""

from __future__ import annotations

from pathlib import Path

from service.jobs import JobStatus
from service.worker import Worker
from tests.helpers.children import trainer_pids
from tests.helpers.services import local_services
from tests.helpers.specs import loaded_spec


def test_a_worker_says_a_job_too_big_for_every_running_worker_waits(tmp_path: Path) -> None:
    services = local_services(tmp_path)
    job = services.jobs.create(loaded_spec(resources={"gpus": 2}))  # queued past the API
    worker = Worker(services)

    assert worker.run_once() is False and worker.run_once() is False

    waiting = [e for e in services.jobs.read_events(job.id) if e.type == "waiting"]
    assert [e.data for e in waiting] == [{"devices": 2, "most_held": 1}]
    assert "the most any running worker holds is 1" in waiting[0].message
    assert services.jobs.get(job.id).status is JobStatus.QUEUED
    # The child started to learn what this worker holds did not outlive run_once (it was left
    # running once, and later tests counting their trainer children found it).
    assert trainer_pids() == []
