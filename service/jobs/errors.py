"""Errors of the job store."""

from __future__ import annotations


class JobError(Exception):
    """Base class for job-store errors."""


class NoSuchJob(JobError):
    """No job with this id (or not visible to this tenant)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"No job with id {job_id!r}.")
        self.job_id = job_id


class JobIsFinal(JobError):
    """The job already reached a final status; nothing changes it any more."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"Job {job_id} is already {status}.")
        self.job_id = job_id
        self.status = status


class LeaseLost(JobError):
    """The worker no longer holds the job (requeued, cancelled or claimed by another)."""

    def __init__(self, job_id: str, worker: str) -> None:
        super().__init__(f"Worker {worker} no longer holds job {job_id}.")
        self.job_id = job_id
        self.worker = worker


class UpdateAborted(JobError):
    """A mutation decided not to change the record (raised inside JobStore.update)."""


class DryRunNotTaken(JobError):
    """No worker took the dry run in time: every worker is busy with dry runs, or none runs."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"No worker took dry run {run_id}.")
        self.run_id = run_id


class DryRunTimedOut(JobError):
    """A worker took the dry run but gave no verdict within its timeout."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"Dry run {run_id} did not finish in time.")
        self.run_id = run_id


class OutputTaken(JobError):
    """The output prefix holds a published model, or another job claimed it first."""


class AliasError(JobError):
    """Base class for alias failures."""


class NoSuchAlias(AliasError):
    """No alias object at the URI."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"No alias at {uri}: a job with promote.alias_uri creates it.")
        self.uri = uri


class InvalidAlias(AliasError):
    """The object at the URI is not an alias object."""


class NoEarlierTarget(AliasError):
    """A rollback with nothing to roll back to."""


class AliasChanged(AliasError):
    """The alias is no longer at the version the caller expected."""

    def __init__(self, uri: str, expected: int, current: int) -> None:
        super().__init__(
            f"The alias {uri} is at version {current}, not {expected}: it changed since it "
            "was read. Show it again and decide anew."
        )
        self.uri = uri
        self.expected = expected
        self.current = current
