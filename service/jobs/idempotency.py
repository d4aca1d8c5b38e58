"""Idempotency keys: the same key and body give the same job, whichever replica answers.

One object per (tenant, key) under ``idempotency/<sha256>.json`` names the job id chosen by the
first request and the sha256 of its (validated) spec. It is created with put_if_absent, so of two
replicas racing with one key exactly one chooses the id; the job itself is then created under
that id, which is safe to repeat.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from service.jobs.clock import now_iso
from service.jobs.errors import JobError
from service.jobs.ids import new_job_id
from service.jobs.record import JobRecord
from service.jobs.store import JobStore
from service.storage.errors import PreconditionFailed

MAX_KEY_LENGTH = 255


class IdempotencyConflict(JobError):
    """The key was used before with a different body."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"This Idempotency-Key was used for job {job_id} with a different body.")
        self.job_id = job_id


def spec_digest(spec: dict[str, Any]) -> str:
    """sha256 of the spec's canonical JSON."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_once(
    jobs: JobStore,
    spec: dict[str, Any],
    tenant: str,
    key: str,
    check_new: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[JobRecord, bool]:
    """Create the job for ``key`` or return the one it created before.

    Args:
        jobs: The job store.
        spec: The validated spec.
        tenant: The caller's tenant.
        key: The Idempotency-Key.
        check_new: Called with ``spec`` before a key seen for the first time creates a job
            (what it raises goes to the caller); not for a repeat, which gets its job back.

    Returns:
        ``(record, created)``; ``created`` is False for a repeated request.

    Raises:
        IdempotencyConflict: The key was used with a different spec.
    """
    key_digest = hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()
    object_key = f"{jobs.prefix}idempotency/{key_digest}.json"
    body_digest = spec_digest(spec)
    if check_new is not None and not jobs.store.exists(object_key):
        check_new(spec)
    entry = {"job_id": new_job_id(), "spec_sha256": body_digest, "created_at": now_iso()}
    created = True
    try:
        jobs.store.put_if_absent(object_key, json.dumps(entry).encode())
    except PreconditionFailed:
        entry = json.loads(jobs.store.get(object_key).data)
        created = False
        if entry["spec_sha256"] != body_digest:
            raise IdempotencyConflict(entry["job_id"]) from None
    record = jobs.create(
        spec, tenant=tenant, job_id=entry["job_id"], idempotency={"key_sha256": key_digest}
    )
    return record, created
