"""Job records kept in the storage backend: create, get, list, claim, update, cancel."""

from service.jobs.errors import JobError, JobIsFinal, LeaseLost, NoSuchJob
from service.jobs.record import FINAL_STATUSES, JobRecord, JobStatus
from service.jobs.store import JobStore

__all__ = [
    "FINAL_STATUSES",
    "JobError",
    "JobIsFinal",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "LeaseLost",
    "NoSuchJob",
]
