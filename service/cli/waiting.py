"""Polling a job until it is final, showing progress and new events on the way."""

from __future__ import annotations

import time
from typing import Any

from service.cli.client import ApiClient
from service.cli.errors import CliError
from service.cli.exit_codes import ExitCode
from service.cli.progress import ProgressView

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
    deadline = None if timeout is None else time.monotonic() + timeout
    after = 0
    job: dict[str, Any] = {"id": job_id, "status": "unknown"}
    try:
        while True:
            try:
                job = client.job(job_id)
                if show_events:
                    for event in client.events(job_id, after):
                        after = max(after, int(event.get("seq", after)))
                        view.event(event)
            except CliError as exc:
                if exc.exit_code is ExitCode.CLIENT_ERROR and "Cannot reach" not in exc.message:
                    raise
                view.note(f"{exc.message.splitlines()[0]} (retrying)")
            else:
                view.update(job)
                if job.get("status") in FINAL_STATUSES:
                    return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimedOut(job)
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(pause, 0.05))
    finally:
        view.close()
