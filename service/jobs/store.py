"""JobStore: job records in an ObjectStore, changed only by compare-and-swap.

Layout under the state prefix:

- ``jobs/<id>.json``: the record, the one source of truth. Created with put_if_absent,
  changed only with put_if_match on the ETag it was read at; ``version`` counts the writes.
- ``queue/<id>``: a marker per queued job, so workers find work without listing every job.
- ``running/<id>``: a marker per claimed job, so workers find jobs whose lease ran out. It is
  written before the claim and removed only by whoever sees the record no longer running.
- ``index/<inverted id>``: a marker per job; ids sort by creation time, and the inverted id
  (each base32 digit d replaced by 31 - d) sorts the other way, so listing is newest first.
- ``events/<id>/<seq>.json``: the job's events (EventLog).
- ``waiting/<id>``: a marker per queued job that no running worker can hold, so that the event
  saying so is written once, however many workers see it (``note_waiting``).
- ``workers/<worker id>.json``: what each running worker holds (service/jobs/workers.py).

Markers are written before the record: the record is the commit point. A marker whose record
does not exist (a create that died half-way) is skipped and, once old, removed.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from service.contract.errors import SpecKeyMissing
from service.contract.plan import JobPlan
from service.jobs.clock import isoformat, now_iso, parse, utcnow
from service.jobs.errors import JobIsFinal, LeaseLost, NoSuchJob, UpdateAborted
from service.jobs.events import Event, EventLog
from service.jobs.ids import invert_id, is_job_id, new_job_id, timestamp_ms
from service.jobs.record import JobRecord, JobStatus, initial_progress
from service.retry import Policy
from service.security.redaction import redact_data
from service.storage.base import ObjectStore
from service.storage.errors import NoSuchKey, PreconditionFailed

log = logging.getLogger(__name__)

ORPHAN_MARKER_AGE_S = 120.0
#: A lost compare-and-swap race: re-read and try again, up to 50 tries, after a random wait of
#: up to 10 ms doubling to 250 ms (full jitter: racing writers spread out at once).
COMPARE_AND_SWAP = Policy(
    "job record compare-and-swap",
    base_delay=0.01,
    max_delay=0.25,
    attempts=50,
    jitter=(0.0, 1.0),
    retry_on=(PreconditionFailed,),
)
Mutation = Callable[[JobRecord], None]


class InvalidCursor(ValueError):
    """A list cursor that this store did not hand out."""


class JobStore:
    """Create, read, list, claim, update and cancel jobs kept in an ObjectStore."""

    def __init__(
        self, store: ObjectStore, prefix: str = "", cas_policy: Policy = COMPARE_AND_SWAP
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.store = store
        self.prefix = prefix
        self.events = EventLog(store, prefix)
        self._cas_policy = cas_policy
        self._devices_wanted: dict[str, int] = {}

    # keys ------------------------------------------------------------------------------
    def _record_key(self, job_id: str) -> str:
        return f"{self.prefix}jobs/{job_id}.json"

    def _queue_key(self, job_id: str) -> str:
        return f"{self.prefix}queue/{job_id}"

    def _running_key(self, job_id: str) -> str:
        return f"{self.prefix}running/{job_id}"

    def _waiting_key(self, job_id: str) -> str:
        return f"{self.prefix}waiting/{job_id}"

    def _index_key(self, job_id: str) -> str:
        return f"{self.prefix}index/{invert_id(job_id)}"

    # reading ---------------------------------------------------------------------------
    def _read(self, job_id: str) -> tuple[JobRecord, str]:
        if not is_job_id(job_id):
            raise NoSuchJob(job_id)
        try:
            stored = self.store.get(self._record_key(job_id))
        except NoSuchKey as exc:
            raise NoSuchJob(job_id) from exc
        return JobRecord.from_json(stored.data), stored.etag

    def get(self, job_id: str, tenant: str | None = None) -> JobRecord:
        """The job; NoSuchJob where it does not exist or belongs to another tenant."""
        record, _ = self._read(job_id)
        if tenant is not None and record.tenant != tenant:
            raise NoSuchJob(job_id)
        return record

    # creating --------------------------------------------------------------------------
    def create(
        self,
        spec: dict[str, Any],
        tenant: str = "default",
        idempotency: dict[str, str] | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        """Queue a new job for ``spec`` (already validated, defaults filled in).

        With ``job_id`` given, creating the same id twice is safe: the second call returns the
        record the first one wrote (this is how an Idempotency-Key survives racing replicas).
        """
        job_id = job_id or new_job_id()
        plan = JobPlan.from_spec(spec)
        record = JobRecord(
            id=job_id,
            tenant=tenant,
            status=JobStatus.QUEUED,
            created_at=now_iso(),
            spec=spec,
            name=plan.name,
            labels=dict(plan.labels),
            progress=initial_progress(plan.training_plan.total_epochs),
            idempotency=idempotency,
            version=1,
        )
        record.updated_at = record.created_at
        for marker in (self._index_key(job_id), self._queue_key(job_id)):
            with contextlib.suppress(PreconditionFailed):
                self.store.put_if_absent(marker, job_id.encode())
        try:
            self.store.put_if_absent(self._record_key(job_id), record.to_json())
        except PreconditionFailed:
            return self._read(job_id)[0]
        self.events.append(job_id, "created", "Job queued.", {"attempt": 0})
        return record

    # changing --------------------------------------------------------------------------
    def update(self, job_id: str, mutate: Mutation) -> JobRecord:
        """Apply ``mutate`` to the record by compare-and-swap, re-reading after every lost race.

        ``mutate`` changes the record in place; it may raise (JobIsFinal, LeaseLost,
        UpdateAborted, ...) to leave the record as it is. It must be safe to call again on a
        fresh copy, since a lost race re-runs it.
        """

        def attempt() -> JobRecord:
            record, etag = self._read(job_id)
            mutate(record)
            record.version += 1
            record.updated_at = now_iso()
            self.store.put_if_match(self._record_key(job_id), record.to_json(), etag)
            return record

        try:
            return self._cas_policy.call(attempt)
        except PreconditionFailed as exc:
            raise RuntimeError(
                f"Job {job_id}: gave up after {self._cas_policy.attempts} lost updates."
            ) from exc

    def cancel(self, job_id: str, tenant: str | None = None) -> JobRecord:
        """Cancel a queued job at once, or ask a running one's worker to stop it.

        Raises JobIsFinal where the job already finished.
        """
        self.get(job_id, tenant)

        def mutate(record: JobRecord) -> None:
            if record.is_final:
                raise JobIsFinal(job_id, record.status)
            if record.status is JobStatus.QUEUED:
                record.status = JobStatus.CANCELLED
                record.finished_at = now_iso()
                record.progress = {**record.progress, "phase": "done"}
            record.cancel_requested = True

        record = self.update(job_id, mutate)
        if record.status is JobStatus.CANCELLED:
            self.store.delete(self._queue_key(job_id))
            self.events.append(job_id, "cancelled", "Job cancelled before it started.")
        else:
            self.events.append(
                job_id, "cancel_requested", "Cancel requested; the worker stops the job."
            )
        return record

    # workers ---------------------------------------------------------------------------
    def queued_ids(self, limit: int = 100) -> list[str]:
        """Ids of queued jobs, oldest first (from the queue index), at most ``limit``."""
        return list(itertools.islice(self._queued(), limit))

    def _queued(self) -> Iterator[str]:
        """Ids of every queued job, oldest first, read page by page as they are asked for."""
        for info in self.store.list(f"{self.prefix}queue/"):
            yield info.key.rsplit("/", 1)[1]

    def claim_next(
        self,
        worker: str,
        lease_seconds: float,
        devices: Callable[[], int] | None = None,
        too_big: Callable[[str, int], None] | None = None,
    ) -> JobRecord | None:
        """Take the oldest queued job for ``worker``; None where there is none.

        Of several workers racing for one job exactly one wins: the claim is a
        compare-and-swap on the record. With ``devices`` (says what the worker holds; asked
        only when a job wants more than one, as every worker holds one) a job asking for more
        (``resources.gpus``) stays queued for another worker, and is handed to ``too_big``
        with the devices it asks for.
        """
        # The whole queue, page by page: however many jobs too big for this worker are queued
        # ahead, one it can hold behind them is reached.
        seen: list[str] = []
        held: int | None = None
        for job_id in self._queued():
            seen.append(job_id)
            if devices is not None:
                wanted = self._wanted(job_id)
                if wanted is not None and wanted > 1:
                    held = devices() if held is None else held
                    if wanted > held:
                        if too_big is not None:
                            too_big(job_id, wanted)
                        continue
            record = self.try_claim(job_id, worker, lease_seconds)
            if record is not None:
                return record
        # A job's spec never changes: what it asks for is read once per job, and forgotten
        # once a whole pass of the queue no longer holds it.
        still = set(seen)
        self._devices_wanted = {
            job_id: wanted for job_id, wanted in self._devices_wanted.items() if job_id in still
        }
        return None

    def _wanted(self, job_id: str) -> int | None:
        """The devices a job asks for; None where its record cannot be read (not yet written)
        or its spec predates ``resources`` (a job queued by an earlier release: one device; the
        worker reads its spec through this release's schema once it claims it)."""
        if job_id not in self._devices_wanted:
            record = self._get_or_none(job_id)
            if record is None:
                return None
            try:
                plan = JobPlan.from_spec(record.spec)
            except SpecKeyMissing:
                return None
            self._devices_wanted[job_id] = plan.training_plan.resources.gpus
        return self._devices_wanted[job_id]

    def note_waiting(self, job_id: str, devices: int, most_held: int) -> bool:
        """Say once, in the job's events, that no running worker can hold it.

        Returns:
            Whether this call wrote the event (of workers racing, one does; a later call for
            the same job writes nothing until a worker has claimed it).
        """
        try:
            self.store.put_if_absent(self._waiting_key(job_id), str(devices).encode())
        except PreconditionFailed:
            return False
        held = (
            f"the most any running worker holds is {most_held}"
            if most_held
            else "no worker is running"
        )
        self.events.append(
            job_id,
            "waiting",
            f"Waiting for a worker with {devices} devices (resources.gpus): {held}. The job "
            "stays queued until such a worker runs; or cancel it and ask for fewer.",
            {"devices": devices, "most_held": most_held},
        )
        return True

    def try_claim(self, job_id: str, worker: str, lease_seconds: float) -> JobRecord | None:
        """Claim one queued job; None where it is gone, not queued, or another worker won."""

        def mutate(record: JobRecord) -> None:
            if record.status is not JobStatus.QUEUED:
                raise UpdateAborted(record.status)
            now = utcnow()
            record.status = JobStatus.RUNNING
            record.attempt += 1
            record.started_at = record.started_at or isoformat(now)
            record.lease = {
                "worker": worker,
                "heartbeat_at": isoformat(now),
                "expires_at": isoformat(now + timedelta(seconds=lease_seconds)),
            }
            record.progress = {**record.progress, "phase": "downloading"}

        # The marker goes first: a worker that dies right after the claim is still found.
        self.store.put(self._running_key(job_id), worker.encode())
        try:
            record = self.update(job_id, mutate)
        except NoSuchJob:
            self._drop_orphan_marker(job_id)
            return None
        except UpdateAborted:
            self.store.delete(self._queue_key(job_id))
            return None
        self.store.delete(self._queue_key(job_id))
        self.store.delete(self._waiting_key(job_id))  # requeued, it may wait again
        self.events.append(
            job_id,
            "claimed",
            f"Attempt {record.attempt} started on {worker}.",
            {"worker": worker, "attempt": record.attempt},
        )
        return record

    def _drop_orphan_marker(self, job_id: str) -> None:
        if not is_job_id(job_id):
            self.store.delete(self._queue_key(job_id))
            return
        age_s = time.time() - timestamp_ms(job_id) / 1000
        if age_s > ORPHAN_MARKER_AGE_S:
            log.warning("removing queue marker of job %s: its record was never written", job_id)
            self.store.delete(self._queue_key(job_id))

    def _held_by(self, worker: str) -> Callable[[JobRecord], None]:
        def check(record: JobRecord) -> None:
            if (
                record.status is not JobStatus.RUNNING
                or not record.lease
                or record.lease.get("worker") != worker
            ):
                raise LeaseLost(record.id, worker)

        return check

    def heartbeat(
        self, job_id: str, worker: str, lease_seconds: float, changes: dict[str, Any] | None = None
    ) -> JobRecord:
        """Renew ``worker``'s lease, applying ``changes`` (progress, metrics) in the same write.

        Raises LeaseLost where the worker no longer holds the job.
        """
        check = self._held_by(worker)

        def mutate(record: JobRecord) -> None:
            check(record)
            now = utcnow()
            assert record.lease is not None
            record.lease = {
                **record.lease,
                "heartbeat_at": isoformat(now),
                "expires_at": isoformat(now + timedelta(seconds=lease_seconds)),
            }
            for name, value in (changes or {}).items():
                setattr(record, name, value)

        return self.update(job_id, mutate)

    def finish(
        self,
        job_id: str,
        worker: str,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> JobRecord:
        """Move a job that ``worker`` holds to a final status.

        Secrets this process knows of are redacted from ``result`` and ``error`` first.
        """
        check = self._held_by(worker)
        result = redact_data(result) if result is not None else None
        error = redact_data(error) if error is not None else None

        def mutate(record: JobRecord) -> None:
            check(record)
            record.status = status
            record.finished_at = now_iso()
            record.lease = None
            record.result = result
            record.error = error
            if metrics is not None:
                record.metrics = metrics
            record.progress = {**record.progress, "phase": "done"}
            if status is JobStatus.SUCCEEDED:
                record.progress["percent"] = 100.0

        record = self.update(job_id, mutate)
        self.store.delete(self._running_key(job_id))
        return record

    def release(self, job_id: str, worker: str, reason: str) -> JobRecord:
        """Hand a job ``worker`` holds back to the queue at once (a graceful stop)."""
        check = self._held_by(worker)

        def mutate(record: JobRecord) -> None:
            check(record)
            _requeue(record)

        record = self.update(job_id, mutate)
        self.store.put(self._queue_key(job_id), job_id.encode())
        self.store.delete(self._running_key(job_id))
        self.events.append(
            job_id,
            "requeued",
            f"Job requeued: {reason}.",
            {"reason": reason, "worker": worker, "attempt": record.attempt},
        )
        return record

    def running_ids(self, limit: int = 1000) -> list[str]:
        """Ids of jobs some worker claimed (from the running index)."""
        ids = []
        for info in self.store.list(f"{self.prefix}running/"):
            ids.append(info.key.rsplit("/", 1)[1])
            if len(ids) >= limit:
                break
        return ids

    def requeue_expired(self) -> list[JobRecord]:
        """Requeue every running job whose lease ran out; fail those out of attempts.

        Any worker may call this; the compare-and-swap makes sure one of them acts on a job.
        Returns the records it changed.
        """
        changed = []
        for job_id in self.running_ids():
            try:
                record = self.get(job_id)
            except NoSuchJob:
                self.store.delete(self._running_key(job_id))
                continue
            if record.status is not JobStatus.RUNNING:
                self.store.delete(self._running_key(job_id))
                continue
            if not self.lease_expired(record):
                continue
            updated = self._expire(record)
            if updated is not None:
                changed.append(updated)
        return changed

    def _expire(self, seen: JobRecord) -> JobRecord | None:
        lease = dict(seen.lease or {})
        max_attempts = JobPlan.from_spec(seen.spec).limits.max_attempts

        def mutate(record: JobRecord) -> None:
            if record.status is not JobStatus.RUNNING or record.lease != lease:
                raise UpdateAborted("the job moved on since it was read")
            if record.attempt >= max_attempts:
                record.status = JobStatus.FAILED
                record.finished_at = now_iso()
                record.lease = None
                record.progress = {**record.progress, "phase": "done"}
                record.error = {
                    "code": "attempts_exhausted",
                    "message": f"The job lost its worker {record.attempt} times "
                    f"(limits.max_attempts is {max_attempts}); the last one, "
                    f"{lease.get('worker')}, stopped renewing its lease at "
                    f"{lease.get('heartbeat_at')}. Check the workers' health, or raise "
                    "limits.max_attempts.",
                }
            else:
                _requeue(record)

        try:
            record = self.update(seen.id, mutate)
        except UpdateAborted:
            return None
        if record.status is JobStatus.QUEUED:
            self.store.put(self._queue_key(record.id), record.id.encode())
        self.store.delete(self._running_key(record.id))
        worker = lease.get("worker")
        if record.status is JobStatus.FAILED:
            message = f"Job failed: its worker {worker} was lost and no attempts are left."
            self.events.append(record.id, "failed", message, {"error": record.error})
        else:
            message = (
                f"Job requeued: the lease of worker {worker} ran out (last heartbeat "
                f"{lease.get('heartbeat_at')}); attempt {record.attempt + 1} follows."
            )
            self.events.append(
                record.id,
                "requeued",
                message,
                {"reason": "lease_expired", "worker": worker, "attempt": record.attempt},
            )
        return record

    def lease_expired(self, record: JobRecord) -> bool:
        """Whether a running job's lease ran out (its worker is gone)."""
        if record.status is not JobStatus.RUNNING or not record.lease:
            return False
        return parse(record.lease["expires_at"]) < utcnow()

    # listing ---------------------------------------------------------------------------
    def list(
        self,
        *,
        tenant: str | None = None,
        status: str | None = None,
        label: tuple[str, str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
        scan_limit: int = 1000,
    ) -> tuple[list[JobRecord], str | None]:
        """A page of jobs, newest first, and the cursor of the next page (None at the end).

        At most ``scan_limit`` index entries are read per call; where filters skip that many,
        the page comes back short with a cursor to go on from.
        """
        start = _decode_cursor(cursor, f"{self.prefix}index/") if cursor else ""
        page: list[JobRecord] = []
        scanned = 0
        entries = self.store.list(f"{self.prefix}index/", start_after=start)
        with ThreadPoolExecutor(max_workers=8) as pool:
            for batch in _batches(entries, max(limit, 16)):
                ids = [invert_id(key.rsplit("/", 1)[1]) for key in batch]
                records = pool.map(self._get_or_none, ids)
                for key, record in zip(batch, records, strict=True):
                    scanned += 1
                    if record is not None and _matches(record, tenant, status, label):
                        page.append(record)
                        if len(page) == limit:
                            return page, _encode_cursor(key)
                    if scanned >= scan_limit:
                        return page, _encode_cursor(key)
        return page, None

    def _get_or_none(self, job_id: str) -> JobRecord | None:
        try:
            return self._read(job_id)[0]
        except NoSuchJob:
            return None

    # events ----------------------------------------------------------------------------
    def add_event(
        self, job_id: str, type_: str, message: str, data: dict[str, Any] | None = None
    ) -> Event:
        """Append to the job's event log."""
        return self.events.append(job_id, type_, message, data)

    def read_events(
        self, job_id: str, after: int = 0, tenant: str | None = None
    ) -> builtins.list[Event]:
        """The job's events after ``after``; NoSuchJob where the job is not visible."""
        self.get(job_id, tenant)
        return self.events.read(job_id, after)


def _requeue(record: JobRecord) -> None:
    """Put a running record back in the queue (the next claim counts the next attempt)."""
    record.status = JobStatus.QUEUED
    record.lease = None
    record.progress = {**record.progress, "phase": "queued"}


def _matches(
    record: JobRecord, tenant: str | None, status: str | None, label: tuple[str, str] | None
) -> bool:
    if tenant is not None and record.tenant != tenant:
        return False
    if status is not None and record.status != status:
        return False
    return label is None or record.labels.get(label[0]) == label[1]


def _batches(infos: Iterator[Any], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for info in infos:
        batch.append(info.key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, index_prefix: str) -> str:
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeError, ValueError) as exc:  # non-ASCII text: ValueError
        raise InvalidCursor("Not a cursor this service handed out.") from exc
    if not key.startswith(index_prefix) or not is_job_id(invert_id(key[len(index_prefix) :])):
        raise InvalidCursor("Not a cursor this service handed out.")
    return key
