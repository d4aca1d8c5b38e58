"""Dry runs handed from the API to the workers through the state storage.

The API never runs worker code: ``POST /v1/jobs/validate`` writes a request here and waits for
its result; a worker's dry-run thread claims it, stages a sample, inspects it in a trainer child
and writes the result. Layout under the state prefix, beside the jobs:

- ``dry-runs/<id>/request.json``: the spec and the time the API waits (written first);
- ``dry-run-queue/<id>``: a marker per request, so workers find them without listing results;
- ``dry-runs/<id>/claim``: who took it, by put_if_absent: exactly one worker wins. An API that
  saw no worker take it in time writes the claim itself, so that none takes it later;
- ``dry-runs/<id>/result.json``: what the worker found.

The API removes it all once it has its answer or gives up; a worker removes what an API that
died left behind (``sweep``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from service.jobs.errors import DryRunNotTaken, DryRunTimedOut
from service.jobs.ids import is_job_id, new_job_id, timestamp_ms
from service.storage.base import ObjectStore
from service.storage.errors import NoSuchKey, PreconditionFailed

log = logging.getLogger(__name__)

#: How long the API waits for any worker to take a dry run before it answers that none can.
#: Workers look for dry runs every ``FINETUNE_POLL_SECONDS``; one that has not taken it by then
#: is busy with other dry runs, or there is none.
TAKE_SECONDS = 10.0
#: The code of a failed dry run that ran out of time...
TIMED_OUT = "timeout"
#: ... and of one whose worker shut down meanwhile (any other code: it failed unexpectedly).
INTERRUPTED = "interrupted"
#: How often the API looks for the result.
RESULT_POLL_SECONDS = 0.2
_WITHDRAWN = b"withdrawn by the API: no worker took it in time"


@dataclass(frozen=True)
class DryRunRequest:
    """What the API asks of a worker: check ``spec``, within ``timeout_seconds``."""

    id: str
    spec: dict[str, Any]
    timeout_seconds: float


@dataclass
class DryRunResult:
    """A worker's verdict: field errors (dotted path -> messages), or none and a report.

    Attributes:
        failure: Where the dry run itself failed: ``{"code", "message"}`` (``TIMED_OUT``,
            ``INTERRUPTED``, or any other code: it failed unexpectedly).
    """

    errors: dict[str, list[str]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, str] | None = None

    @property
    def valid(self) -> bool:
        """Whether the spec, model and data fit together."""
        return not self.errors and self.failure is None


class DryRunStore:
    """The requests and results of dry runs in an ObjectStore (the job store's, and prefix)."""

    def __init__(self, store: ObjectStore, prefix: str = "") -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.store = store
        self.prefix = prefix

    def _key(self, run_id: str, name: str) -> str:
        return f"{self.prefix}dry-runs/{run_id}/{name}"

    def _queue_key(self, run_id: str) -> str:
        return f"{self.prefix}dry-run-queue/{run_id}"

    # the API's side ----------------------------------------------------------------------
    def run(self, spec: dict[str, Any], timeout_seconds: float) -> DryRunResult:
        """Hand ``spec`` to a worker and wait for its verdict; everything is removed after.

        Raises:
            DryRunNotTaken: No worker took it within ``TAKE_SECONDS``.
            DryRunTimedOut: A worker took it but gave no verdict within ``timeout_seconds``.
            StorageError: The state storage failed.
        """
        request = self.submit(spec, timeout_seconds)
        try:
            return self.wait(request)
        finally:
            self.remove(request.id)

    def submit(self, spec: dict[str, Any], timeout_seconds: float) -> DryRunRequest:
        """Write a new request and its queue marker (in that order)."""
        request = DryRunRequest(new_job_id(), spec, timeout_seconds)
        self.store.put_if_absent(self._key(request.id, "request.json"), _dumps(asdict(request)))
        self.store.put_if_absent(self._queue_key(request.id), b"")
        return request

    def wait(self, request: DryRunRequest) -> DryRunResult:
        """Poll for the result of ``request``; see ``run`` for what is raised."""
        started = time.monotonic()
        taken = False
        while True:
            result = self.result(request.id)
            if result is not None:
                return result
            waited = time.monotonic() - started
            if not taken and waited >= min(TAKE_SECONDS, request.timeout_seconds):
                taken = not self._withdraw(request.id)
                if not taken:
                    raise DryRunNotTaken(request.id)
            if waited >= request.timeout_seconds:
                raise DryRunTimedOut(request.id)
            time.sleep(RESULT_POLL_SECONDS)

    def _withdraw(self, run_id: str) -> bool:
        """Claim the request for nobody; False where a worker holds it already."""
        try:
            self.store.put_if_absent(self._key(run_id, "claim"), _WITHDRAWN)
        except PreconditionFailed:
            return False
        return True

    def result(self, run_id: str) -> DryRunResult | None:
        """The verdict, where a worker has written it."""
        try:
            stored = self.store.get(self._key(run_id, "result.json"))
        except NoSuchKey:
            return None
        return DryRunResult(**json.loads(stored.data))

    def remove(self, run_id: str) -> None:
        """Delete the request, its marker, claim and result."""
        self.store.delete(self._queue_key(run_id))
        for name in ("request.json", "claim", "result.json"):
            self.store.delete(self._key(run_id, name))

    # the workers' side -------------------------------------------------------------------
    def claim_next(self, worker: str) -> DryRunRequest | None:
        """Take the oldest waiting request for ``worker``; None where there is none."""
        for info in self.store.list(f"{self.prefix}dry-run-queue/"):
            run_id = info.key.rsplit("/", 1)[1]
            if not is_job_id(run_id):
                self.store.delete(info.key)
                continue
            try:
                self.store.put_if_absent(self._key(run_id, "claim"), worker.encode())
            except PreconditionFailed:  # another worker's, or withdrawn
                self.store.delete(info.key)
                continue
            self.store.delete(info.key)
            try:
                stored = self.store.get(self._key(run_id, "request.json"))
            except NoSuchKey:  # the API gave up and removed it meanwhile
                continue
            return DryRunRequest(**json.loads(stored.data))
        return None

    def finish(self, run_id: str, result: DryRunResult) -> None:
        """Write the verdict, unless the API has given up on it already."""
        if not self.store.exists(self._key(run_id, "request.json")):
            log.info("dry run %s: the API stopped waiting; its result is dropped", run_id)
            return
        self.store.put(self._key(run_id, "result.json"), _dumps(asdict(result)))

    def sweep(self, older_than_seconds: float) -> int:
        """Remove dry runs older than ``older_than_seconds`` (their API died); how many."""
        cutoff_ms = (time.time() - older_than_seconds) * 1000
        stale: set[str] = set()
        for where in ("dry-run-queue/", "dry-runs/"):
            for info in self.store.list(self.prefix + where):
                run_id = info.key[len(self.prefix + where) :].split("/", 1)[0]
                if not is_job_id(run_id):
                    self.store.delete(info.key)  # not written by this service
                elif timestamp_ms(run_id) < cutoff_ms:
                    stale.add(run_id)
        for run_id in stale:
            self.remove(run_id)
        return len(stale)


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
