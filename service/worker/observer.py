"""What the worker tells the outside about its jobs: metrics, and webhooks on final statuses.

Kept out of loop.py so the loop only calls a few hooks: ``job_started``, ``on_message``,
``job_finished``, ``storage_error``, ``close``.
"""

from __future__ import annotations

import logging
import time

from service.context import Services
from service.contract.messages import EpochEnded, PhaseStarted, ProgressMessage
from service.jobs import JobRecord
from service.metrics.worker import WorkerMetrics
from service.webhooks.notifier import JobNotifier
from service.webhooks.sender import DeliveryOutcome

log = logging.getLogger(__name__)


class JobObserver:
    """Records worker metrics and queues webhooks; nothing here may fail or block a job."""

    def __init__(self, services: Services, metrics: WorkerMetrics | None = None) -> None:
        self.metrics = metrics or WorkerMetrics()
        self.notifier = JobNotifier(services.jobs, services.config, on_outcome=self._webhook)
        self._started: float | None = None

    def job_started(self, record: JobRecord) -> None:
        """A job was claimed and is about to run."""
        self._started = time.monotonic()
        self.metrics.job_started()

    def on_message(self, message: ProgressMessage) -> None:
        """A progress message of the trainer (phase, epoch, info, checkpoint)."""
        match message:
            case PhaseStarted(phase="training"):
                self.metrics.training_started()
            case EpochEnded():
                self.metrics.epoch_ended()

    def job_finished(self, record: JobRecord) -> None:
        """The job's final status is recorded: count it and queue its webhook (non-blocking)."""
        seconds = time.monotonic() - self._started if self._started is not None else None
        self._started = None
        error_code = (record.error or {}).get("code")
        try:
            self.metrics.job_finished(str(record.status), error_code, seconds)
            self.notifier.job_finished(record)
        except Exception:  # observability must never turn a finished job into a crash
            log.exception("job %s: recording metrics or queuing the webhook failed", record.id)

    def storage_error(self, where: str) -> None:
        """The worker saw a storage failure at ``where``."""
        self.metrics.storage_error(where)

    def close(self, timeout: float = 10.0) -> None:
        """Let queued webhooks go out for up to ``timeout`` seconds."""
        self.notifier.close(timeout)

    def _webhook(self, outcome: DeliveryOutcome) -> None:
        if outcome.delivered:
            self.metrics.webhook("delivered")
        else:
            self.metrics.webhook("refused" if outcome.refused else "failed")
