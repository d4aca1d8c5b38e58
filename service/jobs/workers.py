"""What each running worker holds, kept in the state bucket: ``workers/<worker id>.json``.

A worker writes its record when it starts and again every little while (``WorkerPresence``
in service/worker/presence.py), whatever it is doing, and deletes it when it stops. A record
not rewritten for ``max_age`` seconds is a worker that is gone (killed, or its machine lost).
So any process can tell what the running workers hold, and whether any of them can hold a job
of N devices (``most_devices``). Plain writes: each worker writes only its own record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import timedelta

from service.jobs.clock import isoformat, parse, utcnow
from service.storage.base import ObjectStore
from service.storage.errors import NoSuchKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerCapacity:
    """One worker and what it holds.

    Attributes:
        worker: The worker's id.
        devices: Devices its trainer holds (a job's ``resources.gpus`` at most this).
        device_kind: ``gpu`` or ``cpu``.
        seen_at: When it last wrote its record (RFC 3339, UTC).
    """

    worker: str
    devices: int
    device_kind: str
    seen_at: str = ""


class WorkerRegistry:
    """Reads and writes the workers' records under ``<prefix>workers/``."""

    def __init__(self, store: ObjectStore, prefix: str = "") -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.store = store
        self.prefix = prefix

    def _key(self, worker: str) -> str:
        return f"{self.prefix}workers/{worker}.json"

    def publish(self, capacity: WorkerCapacity) -> None:
        """Write (or rewrite) ``capacity.worker``'s record, seen now."""
        record = {**asdict(capacity), "seen_at": isoformat(utcnow())}
        self.store.put(self._key(capacity.worker), json.dumps(record).encode())

    def remove(self, worker: str) -> None:
        """Delete ``worker``'s record (it stops)."""
        self.store.delete(self._key(worker))

    def live(self, max_age: float) -> list[WorkerCapacity]:
        """The records written in the last ``max_age`` seconds."""
        oldest = utcnow() - timedelta(seconds=max_age)
        found = []
        for info in self.store.list(f"{self.prefix}workers/"):
            try:
                capacity = WorkerCapacity(**json.loads(self.store.get(info.key).data))
            except NoSuchKey:
                continue
            except (ValueError, TypeError) as exc:
                log.warning("unreadable worker record %s: %s", info.key, exc)
                continue
            if parse(capacity.seen_at) >= oldest:
                found.append(capacity)
        return found

    def most_devices(self, max_age: float) -> int:
        """The most devices any live worker holds; 0 where none is live."""
        return max((capacity.devices for capacity in self.live(max_age)), default=0)
