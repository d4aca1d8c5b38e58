"""A worker's record of what it holds, rewritten every little while (service/jobs/workers.py)."""

from __future__ import annotations

import logging
import threading

from service.jobs.workers import WorkerCapacity, WorkerRegistry
from service.storage.errors import StorageError

log = logging.getLogger(__name__)


class WorkerPresence:
    """A thread that rewrites ``capacity``'s record every ``interval`` seconds until stopped.

    It runs beside the job loop, so a worker busy with a long job still shows as running; a
    write that fails is tried again at the next interval. ``stop`` deletes the record.
    """

    def __init__(self, registry: WorkerRegistry, capacity: WorkerCapacity, interval: float) -> None:
        self.registry = registry
        self.capacity = capacity
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"presence-{capacity.worker}", daemon=True
        )

    def start(self) -> WorkerPresence:
        """Write the record now, then every ``interval`` seconds."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop rewriting, and delete the record."""
        self._stopped.set()
        self._thread.join()
        try:
            self.registry.remove(self.capacity.worker)
        except StorageError as exc:
            log.warning("worker record of %s not removed: %s", self.capacity.worker, exc)

    def _run(self) -> None:
        while True:
            try:
                self.registry.publish(self.capacity)
            except StorageError as exc:
                log.warning("worker record of %s not written: %s", self.capacity.worker, exc)
            if self._stopped.wait(self.interval):
                return
