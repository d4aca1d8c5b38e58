"""JobStore against the real moto S3 server over HTTP and against the local backend."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service.jobs import JobIsFinal, JobStatus, JobStore, LeaseLost, NoSuchJob
from service.storage.errors import PreconditionFailed
from tests.helpers.specs import loaded_spec


def test_create_then_get_and_queue(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec(name="first", labels={"team": "vision"}))
    again = jobs.get(record.id)
    assert again.status is JobStatus.QUEUED
    assert again.version == 1
    assert again.name == "first" and again.labels == {"team": "vision"}
    assert again.spec["training"]["epochs"] == 10
    assert jobs.queued_ids() == [record.id]
    assert [e.type for e in jobs.read_events(record.id)] == ["created"]


def test_unknown_and_malformed_ids_are_no_such_job(jobs: JobStore) -> None:
    with pytest.raises(NoSuchJob):
        jobs.get("ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ")
    with pytest.raises(NoSuchJob):
        jobs.get("../../etc/passwd")


def test_exactly_one_of_many_claimants_wins(jobs: JobStore) -> None:
    rounds, claimants = 15, 8
    for _ in range(rounds):
        record = jobs.create(loaded_spec())
        barrier = threading.Barrier(claimants)

        def claim(worker: int, job_id: str = record.id, gate: Any = barrier) -> Any:
            gate.wait()
            return jobs.try_claim(job_id, f"w{worker}", 60)

        with ThreadPoolExecutor(claimants) as pool:
            results = list(pool.map(claim, range(claimants)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, f"{len(winners)} claimants won one job"
        stored = jobs.get(record.id)
        assert stored.status is JobStatus.RUNNING
        assert stored.attempt == 1
        assert stored.lease and stored.lease["worker"] == winners[0].lease["worker"]
    assert jobs.queued_ids() == []


def test_stale_etag_is_refused(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec())
    key = f"{jobs.prefix}jobs/{record.id}.json"
    stale = jobs.store.get(key)
    jobs.update(record.id, lambda r: setattr(r, "metrics", {"loss": 1.0}))
    with pytest.raises(PreconditionFailed):
        jobs.store.put_if_match(key, stale.data, stale.etag)
    assert jobs.get(record.id).metrics == {"loss": 1.0}


def test_concurrent_updates_lose_nothing_and_versions_increase(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec())
    writers, each = 6, 5

    def bump(worker: int) -> list[int]:
        versions = []
        for i in range(each):

            def mutate(r: Any, key: str = f"w{worker}_{i}") -> None:
                r.metrics = {**r.metrics, key: 1.0}

            versions.append(jobs.update(record.id, mutate).version)
        return versions

    with ThreadPoolExecutor(writers) as pool:
        seen = list(pool.map(bump, range(writers)))
    final = jobs.get(record.id)
    assert len(final.metrics) == writers * each  # no update was lost
    assert final.version == 1 + writers * each
    for versions in seen:
        assert versions == sorted(versions)
    all_versions = sorted(v for versions in seen for v in versions)
    assert all_versions == list(range(2, 2 + writers * each))  # each version written once


def test_cancel_queued_job_is_final_and_not_claimable(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec())
    cancelled = jobs.cancel(record.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.finished_at
    assert jobs.claim_next("w1", 60) is None
    with pytest.raises(JobIsFinal):
        jobs.cancel(record.id)


def test_cancel_running_job_asks_the_worker(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec())
    assert jobs.claim_next("w1", 60) is not None
    asked = jobs.cancel(record.id)
    assert asked.status is JobStatus.RUNNING and asked.cancel_requested
    beat = jobs.heartbeat(record.id, "w1", 60)
    assert beat.cancel_requested


def test_only_the_lease_holder_may_heartbeat_or_finish(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec())
    jobs.claim_next("w1", 60)
    with pytest.raises(LeaseLost):
        jobs.heartbeat(record.id, "w2", 60)
    with pytest.raises(LeaseLost):
        jobs.finish(record.id, "w2", JobStatus.SUCCEEDED)
    done = jobs.finish(
        record.id, "w1", JobStatus.FAILED, error={"code": "internal", "message": "x"}
    )
    assert done.status is JobStatus.FAILED and done.lease is None
    with pytest.raises(LeaseLost):
        jobs.finish(record.id, "w1", JobStatus.SUCCEEDED)  # nothing leaves a final status


def test_list_is_newest_first_with_filters_and_cursor(jobs: JobStore) -> None:
    created = [
        jobs.create(loaded_spec(labels={"n": str(i), "even": str(i % 2 == 0)})) for i in range(7)
    ]
    jobs.cancel(created[0].id)
    page, cursor = jobs.list(limit=3)
    newest_first = [r.id for r in sorted(created, key=lambda r: r.id, reverse=True)]
    assert [r.id for r in page] == newest_first[:3]
    seen = [r.id for r in page]
    while cursor:
        page, cursor = jobs.list(limit=3, cursor=cursor)
        seen += [r.id for r in page]
    assert seen == newest_first
    cancelled, _ = jobs.list(status="cancelled")
    assert [r.id for r in cancelled] == [created[0].id]
    even, _ = jobs.list(label=("even", "True"))
    assert {r.id for r in even} == {created[i].id for i in (0, 2, 4, 6)}
    assert jobs.list(tenant="someone-else")[0] == []


def test_events_are_numbered_and_read_after(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec())
    for i in range(5):
        jobs.add_event(record.id, "info", f"event {i}")
    events = jobs.read_events(record.id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.seq for e in jobs.read_events(record.id, after=4)] == [5, 6]


def test_concurrent_event_writers_never_share_a_number(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec())
    others = [JobStore(jobs.store, jobs.prefix) for _ in range(4)]  # separate caches

    def write(store: JobStore) -> None:
        for i in range(5):
            store.add_event(record.id, "info", str(i))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, others))
    seqs = [e.seq for e in jobs.read_events(record.id)]
    assert seqs == list(range(1, 22))
