"""A job's event log: one object per event, created with put_if_absent so writers never clash."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from service.jobs.clock import now_iso
from service.security.redaction import redact, redact_data
from service.storage.base import ObjectStore
from service.storage.errors import NoSuchKey, PreconditionFailed

_SEQ_WIDTH = 10


@dataclass(frozen=True)
class Event:
    """One thing that happened to a job."""

    seq: int
    time: str
    type: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class EventLog:
    """Appends and reads events under ``<prefix>events/<job_id>/<seq>.json``."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix
        self._next_seq: dict[str, int] = {}
        self._lock = threading.Lock()

    def _key(self, job_id: str, seq: int) -> str:
        return f"{self._prefix}events/{job_id}/{seq:0{_SEQ_WIDTH}d}.json"

    def _last_seq(self, job_id: str) -> int:
        last = 0
        for info in self._store.list(f"{self._prefix}events/{job_id}/"):
            last = max(last, int(info.key.rsplit("/", 1)[1].split(".")[0]))
        return last

    def append(
        self, job_id: str, type_: str, message: str, data: dict[str, Any] | None = None
    ) -> Event:
        """Add an event with the next free sequence number (1, 2, ...).

        Secrets this process knows of are redacted from the message and the data first.
        """
        message = redact(message)
        data = redact_data(data or {})
        with self._lock:
            seq = self._next_seq.get(job_id) or self._last_seq(job_id) + 1
        while True:
            event = Event(seq, now_iso(), type_, message, data or {})
            body = json.dumps(event.__dict__, separators=(",", ":")).encode()
            try:
                self._store.put_if_absent(self._key(job_id, seq), body)
            except PreconditionFailed:
                # Another writer took this number: skip past everything already written.
                seq = max(seq + 1, self._last_seq(job_id) + 1)
                continue
            with self._lock:
                self._next_seq[job_id] = seq + 1
            return event

    def read(self, job_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events with ``seq > after``, oldest first, at most ``limit``."""
        start = self._key(job_id, after) if after > 0 else ""
        events = []
        for info in self._store.list(f"{self._prefix}events/{job_id}/", start_after=start):
            try:
                raw = self._store.get(info.key).data
            except NoSuchKey:
                continue
            events.append(Event(**json.loads(raw)))
            if len(events) >= limit:
                break
        return events

    def delete_all(self, job_id: str) -> None:
        """Remove a job's events."""
        for info in self._store.list(f"{self._prefix}events/{job_id}/"):
            self._store.delete(info.key)
        with self._lock:
            self._next_seq.pop(job_id, None)
