"""Claims by what a worker holds: a job of N devices only for a worker of N or more, the
``waiting`` event written once, and the workers' records of what they hold. On moto over HTTP
and on the local backend."""

from __future__ import annotations

import json
import time

from service.jobs import JobRecord, JobStatus, JobStore
from service.jobs.workers import WorkerCapacity, WorkerRegistry
from tests.helpers.specs import loaded_spec


def test_a_worker_of_one_device_leaves_a_two_device_job_queued(jobs: JobStore) -> None:
    big = jobs.create(loaded_spec(resources={"gpus": 2}))
    small = jobs.create(loaded_spec())
    too_big: list[tuple[str, int]] = []

    claimed = jobs.claim_next(
        "w1", 60, devices=lambda: 1, too_big=lambda job, n: too_big.append((job, n))
    )

    assert claimed is not None and claimed.id == small.id  # the one behind it, not blocked
    assert too_big == [(big.id, 2)]
    assert jobs.get(big.id).status is JobStatus.QUEUED
    assert jobs.queued_ids() == [big.id]
    assert jobs.claim_next("w1", 60, devices=lambda: 1) is None

    taken = jobs.claim_next("w2", 60, devices=lambda: 2)

    assert taken is not None and taken.id == big.id
    assert taken.lease is not None and taken.lease["worker"] == "w2"


def test_a_worker_is_asked_what_it_holds_only_for_a_job_of_several_devices(
    jobs: JobStore,
) -> None:
    jobs.create(loaded_spec())
    asked: list[int] = []

    def devices() -> int:
        asked.append(1)
        return 1

    assert jobs.claim_next("w1", 60, devices=devices) is not None
    assert asked == []


def test_the_waiting_event_is_written_once_until_the_job_is_claimed(jobs: JobStore) -> None:
    job = jobs.create(loaded_spec(resources={"gpus": 4}))

    assert jobs.note_waiting(job.id, 4, 2) is True
    assert jobs.note_waiting(job.id, 4, 2) is False  # another worker, or the next poll
    waiting = [e for e in jobs.read_events(job.id) if e.type == "waiting"]
    assert len(waiting) == 1
    assert waiting[0].data == {"devices": 4, "most_held": 2}
    assert "Waiting for a worker with 4 devices" in waiting[0].message
    assert "the most any running worker holds is 2" in waiting[0].message

    assert jobs.claim_next("w4", 60, devices=lambda: 4) is not None
    assert jobs.note_waiting(job.id, 4, 2) is True  # claimed since: a requeue may wait again


def test_workers_records_say_what_the_live_workers_hold(jobs: JobStore) -> None:
    registry = WorkerRegistry(jobs.store, jobs.prefix)
    registry.publish(WorkerCapacity("one-gpu", 1, "gpu"))
    registry.publish(WorkerCapacity("four-gpus", 4, "gpu"))
    stale = {
        "worker": "gone",
        "devices": 8,
        "device_kind": "gpu",
        "seen_at": "2020-01-01T00:00:00Z",
    }
    jobs.store.put(f"{jobs.prefix}workers/gone.json", json.dumps(stale).encode())

    live = {capacity.worker: capacity for capacity in registry.live(max_age=60)}

    assert set(live) == {"one-gpu", "four-gpus"}
    assert (live["four-gpus"].devices, live["four-gpus"].device_kind) == (4, "gpu")
    assert registry.most_devices(max_age=60) == 4
    registry.remove("four-gpus")
    assert registry.most_devices(max_age=60) == 1
    time.sleep(1.1)
    assert registry.most_devices(max_age=1) == 0


def test_a_job_queued_before_resources_existed_is_claimed_as_one_device(jobs: JobStore) -> None:
    old = jobs.create(loaded_spec())

    def as_an_earlier_release_wrote_it(record: JobRecord) -> None:
        del record.spec["resources"]

    jobs.update(old.id, as_an_earlier_release_wrote_it)
    big = jobs.create(loaded_spec(resources={"gpus": 2}))

    claimed = jobs.claim_next("w1", 60, devices=lambda: 1)

    assert claimed is not None and claimed.id == old.id
    assert jobs.queued_ids() == [big.id]


def test_a_job_behind_more_than_a_page_of_jobs_too_big_is_reached(jobs: JobStore) -> None:
    big = [jobs.create(loaded_spec(resources={"gpus": 4})).id for _ in range(105)]
    small = jobs.create(loaded_spec())
    too_big: list[str] = []

    claimed = jobs.claim_next("w1", 60, devices=lambda: 1, too_big=lambda j, n: too_big.append(j))

    assert claimed is not None and claimed.id == small.id
    assert too_big == big  # every one ahead of it, oldest first, each asked for once
    assert jobs.queued_ids(limit=1000) == big
