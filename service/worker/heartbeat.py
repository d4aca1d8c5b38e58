"""A running job's heartbeat: renews the lease and carries progress into the record."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from service.jobs import JobStore, LeaseLost
from service.retry import Policy
from service.storage.errors import StorageError
from service.worker.retry_policies import EVENT_DRAIN

log = logging.getLogger(__name__)


class Heartbeat:
    """A thread that renews ``worker``'s lease every ``interval`` seconds.

    Progress and metrics set with ``update`` travel in the next renewal (``flush`` sends them
    at once); events added with ``event`` are written after it, in order. While storage is
    unreachable both wait in memory and go out once it is back, so training never stalls on
    storage. The thread notes a cancel request or a lost lease; the job's main thread asks
    ``cancel_requested`` and ``lost`` and stops the work.
    """

    def __init__(
        self,
        jobs: JobStore,
        job_id: str,
        worker: str,
        *,
        interval: float,
        lease_seconds: float,
        progress: dict[str, Any],
    ) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._worker = worker
        self._interval = interval
        self._lease_seconds = lease_seconds
        self._changes: dict[str, Any] = {"progress": dict(progress)}
        self._events: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.cancel_requested = False
        self.lost = False
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def start(self) -> Heartbeat:
        """Start renewing."""
        self._thread.start()
        return self

    def update(self, **changes: Any) -> None:
        """Record fields (``progress``, ``metrics``) to write with the next renewal."""
        with self._lock:
            self._changes.update(changes)

    def event(self, type_: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Queue an event for the job's log; it is written with the next renewal."""
        with self._lock:
            self._events.append((type_, message, data or {}))

    @property
    def progress(self) -> dict[str, Any]:
        """The progress last set."""
        with self._lock:
            return dict(self._changes["progress"])

    @property
    def metrics(self) -> dict[str, float]:
        """The metrics last set (empty before the first epoch)."""
        with self._lock:
            return dict(self._changes.get("metrics") or {})

    def flush(self) -> None:
        """Renew now rather than at the next interval."""
        self._wake.set()

    def stop(self) -> None:
        """Stop renewing (the lease stays until the job is finished or released)."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def drain_events(self, policy: Policy = EVENT_DRAIN) -> None:
        """Write the events still waiting, retrying by ``policy`` while storage is unreachable."""
        try:
            policy.call(self._write_events, on_retry=self._not_written)
        except StorageError:
            log.warning("job %s: %d events could not be written", self._job_id, len(self._events))

    def _not_written(self, exc: BaseException, tries: int, wait: float) -> None:
        log.warning(
            "job %s: events not written yet, retrying in %.0f s: %s", self._job_id, wait, exc
        )

    def _write_events(self) -> None:
        """Write every waiting event, in order; StorageError leaves the rest waiting."""
        # One writer at a time (the beat thread or a drain), so each event is written once.
        with self._write_lock:
            while True:
                with self._lock:
                    if not self._events:
                        return
                    type_, message, data = self._events[0]
                self._jobs.add_event(self._job_id, type_, message, data)
                with self._lock:
                    self._events.pop(0)

    def _beat(self) -> None:
        with self._lock:
            changes = dict(self._changes)
        try:
            record = self._jobs.heartbeat(self._job_id, self._worker, self._lease_seconds, changes)
        except LeaseLost:
            log.warning("job %s: lease lost; another worker or a cancel took it", self._job_id)
            self.lost = True
            return
        except StorageError as exc:
            # Keep training: the lease outlives a short outage, and the next beat catches up.
            log.warning("job %s: heartbeat failed, will retry: %s", self._job_id, exc)
            return
        if record.cancel_requested:
            self.cancel_requested = True
        try:
            self._write_events()
        except StorageError as exc:
            log.warning("job %s: event not written yet, will retry: %s", self._job_id, exc)

    def _run(self) -> None:
        next_beat = time.monotonic()
        while not self._stopped.is_set():
            self._wake.wait(timeout=max(0.0, next_beat - time.monotonic()))
            if self._stopped.is_set():
                return
            self._wake.clear()
            self._beat()
            next_beat = time.monotonic() + self._interval
