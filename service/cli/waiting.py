"""Polling a job until it is final, showing progress and new events on the way."""

from __future__ import annotations

from typing import Any

from service.cli.client import ApiClient
from service.cli.errors import CliError
from service.cli.exit_codes import ExitCode
from service.cli.progress import ProgressView
from service.retry import Policy

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class WaitTimedOut(Exception):
    """``--timeout`` ran out; ``job`` is the job as last read."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(job.get("id"))
        self.job = job


def wait_for(
    client: ApiClient,
    job_id: str,
    view: ProgressView,
    *,
    timeout: float | None = None,
    interval: float = 2.0,
    show_events: bool = True,
) -> dict[str, Any]:
    """Poll until the job is final; return it. Raises WaitTimedOut past ``timeout`` seconds.

    A 5xx or an unreachable service while polling is noted and retried until the timeout
    (a restarting API replica should not fail a CI step); a 4xx (the job is gone, the token
    is refused) ends the wait at once.
    """
    polling = Policy(
        "waiting for the job",
        base_delay=interval,
        multiplier=1.0,
        deadline=timeout,
        retry_on=(_NotFinal, CliError),
        retryable=_worth_polling_again,
    )
    after = 0
    last: dict[str, Any] = {"id": job_id, "status": "unknown"}

    def poll() -> dict[str, Any]:
        nonlocal after, last
        job = client.job(job_id)
        if show_events:
            for event in client.events(job_id, after):
                after = max(after, int(event.get("seq", after)))
                view.event(event)
        last = job
        view.update(job)
        if job.get("status") not in FINAL_STATUSES:
            raise _NotFinal()
        return job

    def noted(exc: BaseException, tries: int, wait: float) -> None:
        if isinstance(exc, CliError):
            view.note(f"{exc.message.splitlines()[0]} (retrying)")

    try:
        return polling.call(poll, on_retry=noted)
    except (_NotFinal, CliError) as exc:
        if isinstance(exc, CliError) and not _worth_polling_again(exc):
            raise
        raise WaitTimedOut(last) from None
    finally:
        view.close()


class _NotFinal(Exception):
    """The job is still queued or running: poll again."""


def _worth_polling_again(exc: BaseException) -> bool:
    """Not final yet, a 5xx or an unreachable service: yes; any other 4xx: no."""
    if isinstance(exc, CliError):
        return exc.exit_code is not ExitCode.CLIENT_ERROR or "Cannot reach" in exc.message
    return True
