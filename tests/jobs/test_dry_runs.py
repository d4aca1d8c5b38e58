"""Dry runs handed over through the state storage: one taker, results, clean-up (both backends)."""

from __future__ import annotations

import time

import pytest

from service.jobs import JobStore
from service.jobs.dry_runs import DryRunResult, DryRunStore
from service.jobs.ids import new_job_id


@pytest.fixture
def store(jobs: JobStore) -> DryRunStore:
    """Dry runs beside the jobs of ``jobs``."""
    return DryRunStore(jobs.store, jobs.prefix)


def _keys(store: DryRunStore) -> list[str]:
    return [info.key for info in store.store.list(store.prefix + "dry-run")]


def test_exactly_one_worker_takes_a_request_and_its_result_reaches_the_api(
    store: DryRunStore,
) -> None:
    request = store.submit({"name": "spec"}, timeout_seconds=30)

    taken = store.claim_next("worker-a")
    assert taken == request
    assert store.claim_next("worker-b") is None  # the marker is gone, the claim is a's

    store.finish(request.id, DryRunResult(errors={"head.cut_at": ["no layer named 'x'"]}))
    assert store.wait(request) == DryRunResult(errors={"head.cut_at": ["no layer named 'x'"]})
    store.remove(request.id)
    assert _keys(store) == []


def test_a_result_for_a_request_the_api_gave_up_on_is_dropped(store: DryRunStore) -> None:
    request = store.submit({"name": "spec"}, timeout_seconds=30)
    assert store.claim_next("worker") == request
    store.remove(request.id)  # the API stopped waiting

    store.finish(request.id, DryRunResult(report={"late": True}))

    assert store.result(request.id) is None and _keys(store) == []


def test_sweep_removes_only_what_is_older_than_asked(store: DryRunStore) -> None:
    fresh = store.submit({"name": "fresh"}, timeout_seconds=30)
    old_id = new_job_id(now_ms=int((time.time() - 3600) * 1000))
    for key in (f"dry-runs/{old_id}/request.json", f"dry-runs/{old_id}/claim"):
        store.store.put(store.prefix + key, b"{}")

    assert store.sweep(older_than_seconds=600) == 1

    assert all(fresh.id in key for key in _keys(store)) and len(_keys(store)) == 2
