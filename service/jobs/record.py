"""The job record: one small JSON object per job, with a version counter inside."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """``queued`` → ``running`` → ``succeeded`` | ``failed`` | ``cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
#: Record fields the API never shows.
_PRIVATE_FIELDS = frozenset({"tenant", "idempotency", "version"})


def initial_progress(epochs: int = 0) -> dict[str, Any]:
    """Progress of a job nobody has started: none of its ``epochs`` (all phases') done."""
    return {"phase": "queued", "epoch": 0, "epochs": epochs, "percent": 0.0}


@dataclass
class JobRecord:
    """What the store keeps of a job. ``version`` grows by one with every write."""

    id: str
    tenant: str
    status: JobStatus
    created_at: str
    spec: dict[str, Any]
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    attempt: int = 0
    progress: dict[str, Any] = field(default_factory=initial_progress)
    metrics: dict[str, float] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    cancel_requested: bool = False
    lease: dict[str, str] | None = None
    idempotency: dict[str, str] | None = None
    version: int = 0

    @property
    def is_final(self) -> bool:
        """Whether nothing may change the job's status any more."""
        return self.status in FINAL_STATUSES

    def to_json(self) -> bytes:
        """The stored form."""
        data = asdict(self)
        data["status"] = str(self.status)
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> JobRecord:
        """The inverse of to_json."""
        data = json.loads(raw)
        data["status"] = JobStatus(data["status"])
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})

    def public(self) -> dict[str, Any]:
        """The job as the API shows it (JobSchema dumps this).

        A shallow view: nested values are this record's own, not copies (a deep copy of the
        spec was half the time of ``GET /v1/jobs/{id}``, bench/RESULTS.md). Callers dump it
        at once and change neither.
        """
        data = {name: getattr(self, name) for name in _PUBLIC_FIELDS}
        data["status"] = str(self.status)
        return data


_PUBLIC_FIELDS = tuple(f.name for f in fields(JobRecord) if f.name not in _PRIVATE_FIELDS)
