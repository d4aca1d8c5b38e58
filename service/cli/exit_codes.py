"""The CLI's exit codes: what a CI step branches on.

| code | meaning |
|---|---|
| 0 | success (for ``submit --wait`` / ``wait``: the job ``succeeded``) |
| 1 | the job ``failed`` (any error code but ``gate_failed``) |
| 2 | client-side error: bad arguments, unreadable or invalid spec file, a 4xx answer |
|   | (422 invalid spec, 404 unknown job, 401/403), the service unreachable |
| 3 | the job failed its quality gate (``gate_failed``): nothing was published |
| 4 | the job was ``cancelled`` |
| 5 | ``--timeout`` ran out while waiting; the job is still queued or running |
| 6 | the service answered 5xx (after retries) |
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """See the module docstring for the table."""

    OK = 0
    JOB_FAILED = 1
    CLIENT_ERROR = 2
    GATE_FAILED = 3
    CANCELLED = 4
    WAIT_TIMEOUT = 5
    SERVICE_ERROR = 6


def for_job(job: dict[str, Any]) -> ExitCode:
    """The exit code for a job in a final status (OK for one that is not final)."""
    status = job.get("status")
    if status == "failed":
        code = (job.get("error") or {}).get("code")
        return ExitCode.GATE_FAILED if code == "gate_failed" else ExitCode.JOB_FAILED
    if status == "cancelled":
        return ExitCode.CANCELLED
    return ExitCode.OK
