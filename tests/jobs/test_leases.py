"""Leases: release, requeue after expiry, attempts running out (job store level, both backends)."""

from __future__ import annotations

import time

import pytest

from service.jobs import JobStatus, JobStore, LeaseLost
from tests.helpers.specs import loaded_spec


def test_release_requeues_at_once(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec())
    jobs.claim_next("w1", 60)
    released = jobs.release(record.id, "w1", "the worker is shutting down")
    assert released.status is JobStatus.QUEUED and released.lease is None
    again = jobs.claim_next("w2", 60)
    assert again is not None and again.id == record.id and again.attempt == 2
    with pytest.raises(LeaseLost):
        jobs.heartbeat(record.id, "w1", 60)
    types = [e.type for e in jobs.read_events(record.id)]
    assert types == ["created", "claimed", "requeued", "claimed"]


def test_expired_lease_is_requeued_once_and_live_ones_are_not(jobs: JobStore) -> None:
    lost = jobs.create(loaded_spec())
    live = jobs.create(loaded_spec())
    jobs.try_claim(lost.id, "dead-worker", 0.2)
    jobs.try_claim(live.id, "live-worker", 60)
    time.sleep(0.4)
    changed = jobs.requeue_expired()
    assert [r.id for r in changed] == [lost.id]
    assert jobs.get(lost.id).status is JobStatus.QUEUED
    assert jobs.get(live.id).status is JobStatus.RUNNING
    assert jobs.requeue_expired() == []  # nothing twice
    requeued = [e for e in jobs.read_events(lost.id) if e.type == "requeued"]
    assert len(requeued) == 1 and "dead-worker" in requeued[0].message
    assert jobs.running_ids() == [live.id]


def test_job_out_of_attempts_fails_saying_so(jobs: JobStore) -> None:
    record = jobs.create(loaded_spec(limits={"max_attempts": 2}))
    for attempt in (1, 2):
        claimed = jobs.try_claim(record.id, f"w{attempt}", 0.1)
        assert claimed is not None and claimed.attempt == attempt
        time.sleep(0.25)
        jobs.requeue_expired()
    final = jobs.get(record.id)
    assert final.status is JobStatus.FAILED
    assert final.error and final.error["code"] == "attempts_exhausted"
    assert "2 times" in final.error["message"] and "max_attempts" in final.error["message"]
    assert jobs.claim_next("w3", 60) is None


def test_sweepers_racing_act_once(jobs: JobStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    record = jobs.create(loaded_spec())
    jobs.try_claim(record.id, "dead", 0.1)
    time.sleep(0.3)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: jobs.requeue_expired(), range(6)))
    assert sum(len(r) for r in results) == 1
    assert jobs.get(record.id).version == 3  # created, claimed, requeued: one write each
