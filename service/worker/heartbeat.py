"""A running job's heartbeat: renews the lease and carries progress into the record."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from service.jobs import JobStore, LeaseLost
from service.storage.errors import StorageError

log = logging.getLogger(__name__)


class Heartbeat:
    """A thread that renews ``worker``'s lease every ``interval`` seconds.

    Progress and metrics set with ``update`` travel in the next renewal (``flush`` sends them
    at once). The thread notes a cancel request or a lost lease; the job's main thread asks
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
        self._lock = threading.Lock()
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

    @property
    def progress(self) -> dict[str, Any]:
        """The progress last set."""
        with self._lock:
            return dict(self._changes["progress"])

    def flush(self) -> None:
        """Renew now rather than at the next interval."""
        self._wake.set()

    def stop(self) -> None:
        """Stop renewing (the lease stays until the job is finished or released)."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=30)

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

    def _run(self) -> None:
        next_beat = time.monotonic()
        while not self._stopped.is_set():
            self._wake.wait(timeout=max(0.0, next_beat - time.monotonic()))
            if self._stopped.is_set():
                return
            self._wake.clear()
            self._beat()
            next_beat = time.monotonic() + self._interval
