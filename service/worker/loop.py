"""The worker loop: requeue abandoned jobs, claim a job, run it, record the outcome, repeat."""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from typing import Any

from service.context import Services
from service.jobs import JobRecord, JobStatus, LeaseLost
from service.jobs.checkpoints import CheckpointStore
from service.jobs.dry_runs import DryRunStore
from service.jobs.workers import WorkerCapacity, WorkerRegistry
from service.logs import job_logging
from service.storage.errors import StorageError
from service.worker import retry_policies, visuals
from service.worker.archives import ArchiveLimits
from service.worker.attempt_dirs import remove_attempt
from service.worker.child_runner import TrainerPool
from service.worker.dry_runs import DryRunner
from service.worker.errors import JobAbandoned, JobCancelled, JobFailure, JobInterrupted
from service.worker.heartbeat import Heartbeat
from service.worker.job_run import JobRun
from service.worker.observer import JobObserver
from service.worker.presence import WorkerPresence
from service.worker.spec_upgrade import SpecNoLongerValid, spec_for_this_release
from service.worker.staging import Stager

log = logging.getLogger(__name__)

_INTERNAL_ERROR = {
    "code": "internal",
    "message": "Internal error in the worker; operators have the details in its log. "
    "Retrying the job may help.",
}


def default_worker_id() -> str:
    """``host-pid-random``: unique per worker process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    """Claims queued jobs one at a time and runs each to a final status.

    Setting ``stopping`` (the SIGTERM handler does) hands a running job back to the queue at
    once, its last epoch's checkpoint already stored, and ends ``run_forever``.

    It claims only jobs that fit the devices its trainer holds (``capacity``); a job too big
    for every running worker gets one ``waiting`` event. ``run_forever`` publishes what it
    holds in the state bucket (service/jobs/workers.py) while it runs.
    """

    def __init__(self, services: Services, worker_id: str | None = None) -> None:
        self.services = services
        self.jobs = services.jobs
        self.config = services.config
        self.worker_id = worker_id or default_worker_id()
        self.stager = Stager(
            services.storage,
            ArchiveLimits(
                self.config.max_archive_bytes,
                self.config.max_archive_files,
                self.config.max_archive_ratio,
            ),
        )
        self.checkpoints = CheckpointStore(self.jobs.store, self.jobs.prefix)
        self.stopping = threading.Event()
        self._next_sweep = 0.0
        self.observer = JobObserver(services)  # metrics and webhooks (observer.py)
        # run_forever keeps a warm trainer child ready (FINETUNE_WARM_TRAINER); run_once alone
        # starts one per job and leaves none behind.
        self.trainers = TrainerPool(warm=False, logical_devices=self.config.logical_devices)
        self.registry = WorkerRegistry(self.jobs.store, self.jobs.prefix)
        self._capacity: WorkerCapacity | None = None
        self._waiting_noted: set[str] = set()
        self._most_held: tuple[float, int] | None = None  # (when read, devices)
        self.dry_runs = DryRunner(
            DryRunStore(self.jobs.store, self.jobs.prefix),
            self.stager,
            self.trainers,
            self.config,
            self.worker_id,
            self.stopping,
        )

    def run_forever(self) -> None:
        """Work until ``stopping`` is set: jobs in this thread, dry runs in threads of their own.

        Call it from a thread that lives as long as the worker: the trainer children it starts
        die with the thread that started them.
        """
        log.info("worker %s polling %s", self.worker_id, self.config.state_uri)
        self.trainers.warm = self.config.warm_trainer
        threading.Thread(target=visuals.warm_up, name="warm-up-visuals", daemon=True).start()
        dry_runners = [
            threading.Thread(target=self.dry_runs.run_forever, name=f"dry-runs-{n}")
            for n in range(max(1, self.config.dry_run_concurrency))
        ]
        for thread in dry_runners:
            thread.start()
        presence = WorkerPresence(
            self.registry, self.capacity(), self.config.heartbeat_seconds
        ).start()
        while not self.stopping.is_set():
            self.trainers.prepare()
            try:
                self.sweep()
                ran = self.run_once()
            except StorageError as exc:
                log.warning("storage unavailable while looking for work: %s", exc)
                self.observer.storage_error("poll")
                ran = False
            if not ran:
                self.stopping.wait(self.config.poll_seconds)
        for thread in dry_runners:
            thread.join()
        presence.stop()
        self.trainers.close()
        self.observer.close()
        log.info("worker %s stopped", self.worker_id)

    def sweep(self, force: bool = False) -> None:
        """Requeue jobs whose worker stopped renewing its lease (every ``sweep_seconds``)."""
        now = time.monotonic()
        if not force and now < self._next_sweep:
            return
        # Jitter spreads the sweeps of many workers over the interval.
        self._next_sweep = now + self.config.sweep_seconds * random.uniform(0.75, 1.25)
        for record in self.jobs.requeue_expired():
            log.warning("job %s: lease of a lost worker ran out; now %s", record.id, record.status)

    def run_once(self) -> bool:
        """Claim and run one job; False where none was queued."""
        if self.stopping.is_set():
            return False
        try:
            record = self.jobs.claim_next(
                self.worker_id,
                self.config.lease_seconds,
                devices=lambda: self.capacity().devices,
                too_big=self._wait_for_bigger,
            )
            if record is None:
                return False
            with job_logging(record.id):
                record = self._spec_read_by_this_release(record)
                self.observer.job_started(record)
                self.run_job(record)
            return True
        finally:
            if not self.trainers.warm:
                # A child started only to say what the trainer holds (capacity) is not kept.
                self.trainers.close()

    def _spec_read_by_this_release(self, record: JobRecord) -> JobRecord:
        """The record, its spec given the fields added since an earlier release queued it.

        A spec this release refuses is left as it is: its run fails, naming the fields.
        """
        try:
            upgraded = spec_for_this_release(record.spec)
        except SpecNoLongerValid as exc:
            log.warning("job %s: %s", record.id, exc)
            return record
        if upgraded is None:
            return record
        added = sorted(_added_keys(record.spec, upgraded))
        log.info("job %s: queued by an earlier release; defaults for %s", record.id, added)

        def upgrade(current: JobRecord) -> None:
            current.spec = upgraded

        return self.jobs.update(record.id, upgrade)

    def capacity(self) -> WorkerCapacity:
        """The devices this worker's trainer holds, as its first trainer child said.

        Asked once (a child is started to say it, and kept for the next run where the trainer
        is kept warm; run_once alone stops it before it returns). A child that does not answer
        in time counts as one device, asked again next time.
        """
        if self._capacity is not None:
            return self._capacity
        held = self.trainers.capacity()
        if held is None:
            log.warning("the trainer did not say what devices it holds; counting one for now")
            return WorkerCapacity(self.worker_id, 1, "cpu")
        self._capacity = WorkerCapacity(self.worker_id, held.devices, held.device_kind)
        log.info("worker %s holds %d %s device(s)", self.worker_id, held.devices, held.device_kind)
        return self._capacity

    def _wait_for_bigger(self, job_id: str, devices: int) -> None:
        """A queued job asks for more devices than this worker holds: where no running worker
        holds that many, say so in its events (once)."""
        if job_id in self._waiting_noted:
            return
        most = max(self._most_devices_held(), self.capacity().devices)
        if most >= devices:
            return  # a bigger worker runs: the job waits for it to be free
        self.jobs.note_waiting(job_id, devices, most)
        self._waiting_noted.add(job_id)

    def _most_devices_held(self) -> int:
        """The most devices of a running worker, read again at most every ``sweep_seconds``."""
        now = time.monotonic()
        if self._most_held is None or now - self._most_held[0] > self.config.sweep_seconds:
            self._most_held = (now, self.registry.most_devices(self.config.lease_seconds))
        return self._most_held[1]

    def run_job(self, record: JobRecord) -> None:
        """Run a claimed attempt to a final status, or hand it back, or give it up."""
        job_dir = self.config.work_dir / record.id / f"attempt-{record.attempt}"
        heartbeat = Heartbeat(
            self.jobs,
            record.id,
            self.worker_id,
            interval=self.config.heartbeat_seconds,
            lease_seconds=self.config.lease_seconds,
            progress=record.progress,
        ).start()
        run = JobRun(
            record,
            jobs=self.jobs,
            checkpoints=self.checkpoints,
            stager=self.stager,
            heartbeat=heartbeat,
            job_dir=job_dir,
            work_dir=self.config.work_dir,
            stopping=self.stopping,
            min_batch_size=self.config.min_batch_size,
            data_cache_mb=self.config.data_cache_mb,
            model_limits=(self.config.max_input_pixels, self.config.max_model_params),
            fault_oom_above_batch=self.config.fault_oom_above_batch,
            on_message=self.observer.on_message,
            trainers=self.trainers,
        )
        try:
            result, metrics = run.execute()
        except JobInterrupted:
            run.remove_partial_outputs()
            self._release(record, heartbeat)
        except JobAbandoned:
            log.warning("job %s: abandoned; its lease is held elsewhere", record.id)
            heartbeat.stop()
        except JobCancelled:
            run.remove_partial_outputs()
            self._finish(
                record,
                heartbeat,
                JobStatus.CANCELLED,
                error={"code": "cancelled", "message": "Cancelled at the client's request."},
            )
        except JobFailure as failure:
            log.info("job %s failed: %s", record.id, failure)
            run.remove_partial_outputs()
            self._finish(
                record,
                heartbeat,
                JobStatus.FAILED,
                error={**failure.details, "code": failure.code, "message": failure.message},
                metrics=heartbeat.metrics,
            )
        except Exception:
            log.exception("job %s: unexpected error", record.id)
            run.remove_partial_outputs()
            self._finish(record, heartbeat, JobStatus.FAILED, error=dict(_INTERNAL_ERROR))
        else:
            self._finish(record, heartbeat, JobStatus.SUCCEEDED, result=result, metrics=metrics)
        finally:
            remove_attempt(job_dir)

    # outcomes --------------------------------------------------------------------------
    def _release(self, record: JobRecord, heartbeat: Heartbeat) -> None:
        heartbeat.drain_events(retry_policies.EVENT_DRAIN_AT_SHUTDOWN)
        heartbeat.stop()
        policy = retry_policies.hand_back(self.config.shutdown_grace_seconds)
        try:
            policy.call(
                lambda: self.jobs.release(record.id, self.worker_id, "the worker is shutting down")
            )
        except LeaseLost:
            return
        except StorageError as exc:
            log.error("job %s not handed back (%s); its lease will run out", record.id, exc)
            return
        log.info("job %s handed back to the queue", record.id)

    def _finish(
        self,
        record: JobRecord,
        heartbeat: Heartbeat,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        # The heartbeat keeps the lease alive while the final status waits out an outage.
        heartbeat.drain_events()
        finished = self._record_final(record, status, result, error, metrics)
        heartbeat.stop()
        if finished is None:
            return
        message = {
            JobStatus.SUCCEEDED: "Job succeeded.",
            JobStatus.CANCELLED: "Job cancelled while running; its trainer was stopped.",
            JobStatus.FAILED: f"Job failed: {error['message'] if error else ''}",
        }[status]
        heartbeat.event(str(status), message, {"error": error} if error else {})
        heartbeat.drain_events()
        self.observer.job_finished(finished)  # after the status is recorded; never blocks
        try:
            self.checkpoints.delete(record.id)
        except StorageError as exc:
            log.warning("job %s: checkpoints not removed: %s", record.id, exc)

    def _record_final(
        self,
        record: JobRecord,
        status: JobStatus,
        result: dict[str, Any] | None,
        error: dict[str, str] | None,
        metrics: dict[str, float] | None,
    ) -> JobRecord | None:
        """Write the final status, waiting out a storage outage; None where the job moved on."""

        def waiting(exc: BaseException, tries: int, wait: float) -> None:
            log.warning(
                "job %s: storage unreachable while recording %s; retrying in %.1f s: %s",
                record.id,
                status,
                wait,
                exc,
            )

        try:
            return retry_policies.FINAL_STATUS.call(
                lambda: self.jobs.finish(
                    record.id, self.worker_id, status, result=result, error=error, metrics=metrics
                ),
                on_retry=waiting,
            )
        except LeaseLost:
            log.warning("job %s: could not record %s, the lease was lost", record.id, status)
            return None


def _added_keys(old: Any, new: Any, path: str = "") -> list[str]:
    """The dotted paths in ``new`` that ``old`` lacks (dictionaries only)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    added = []
    for key, value in new.items():
        if key not in old:
            added.append(f"{path}{key}")
        else:
            added += _added_keys(old[key], value, f"{path}{key}.")
    return added
