"""A worker's metrics, served on its own port (``FINETUNE_WORKER_METRICS_PORT``).

Each worker process is one scrape target (in Kubernetes: a pod annotation or a PodMonitor);
nothing here is shared between processes, so no multiprocess mode is needed.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
_EPOCH_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class WorkerMetrics:
    """The metrics one worker records, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.job_seconds = Histogram(
            "finetune_job_duration_seconds",
            "Wall time of a job attempt from claim to final status, by final status.",
            ["status"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "finetune_jobs_finished",
            "Jobs this worker brought to a final status, by status and error code.",
            ["status", "error_code"],
            registry=self.registry,
        )
        self.epoch_seconds = Histogram(
            "finetune_epoch_duration_seconds",
            "Wall time of one training epoch (including validation).",
            buckets=_EPOCH_BUCKETS,
            registry=self.registry,
        )
        self.epochs_per_second = Gauge(
            "finetune_epochs_per_second",
            "Training speed of the running job's last epoch (epochs per second; 0 when idle).",
            registry=self.registry,
        )
        self.epochs = Counter(
            "finetune_epochs", "Training epochs this worker ran.", registry=self.registry
        )
        self.busy = Gauge(
            "finetune_worker_busy", "1 while the worker runs a job.", registry=self.registry
        )
        self.storage_errors = Counter(
            "finetune_storage_errors",
            "Storage failures seen by the worker (polling for work, jobs failed with 'storage').",
            ["process", "where"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "finetune_webhook_deliveries",
            "Webhook deliveries by outcome: delivered, failed, refused (address not allowed).",
            ["outcome"],
            registry=self.registry,
        )
        self._epoch_started: float | None = None

    # events of a job ------------------------------------------------------------------
    def job_started(self) -> None:
        """A job was claimed."""
        self.busy.set(1)
        self._epoch_started = None

    def training_started(self) -> None:
        """The trainer entered its training phase: the first epoch is timed from here."""
        self._epoch_started = time.monotonic()

    def epoch_ended(self) -> None:
        """One epoch finished."""
        now = time.monotonic()
        self.epochs.inc()
        if self._epoch_started is not None:
            seconds = max(now - self._epoch_started, 1e-9)
            self.epoch_seconds.observe(seconds)
            self.epochs_per_second.set(1.0 / seconds)
        self._epoch_started = now

    def job_finished(self, status: str, error_code: str | None, seconds: float | None) -> None:
        """A job reached a final status after ``seconds`` (None where unknown)."""
        self.busy.set(0)
        self.epochs_per_second.set(0)
        self._epoch_started = None
        self.jobs_finished.labels(status, error_code or "").inc()
        if seconds is not None:
            self.job_seconds.labels(status).observe(seconds)
        if error_code == "storage":
            self.storage_error("job")

    def storage_error(self, where: str) -> None:
        """Count one storage failure at ``where`` (``poll``, ``job``)."""
        self.storage_errors.labels(process="worker", where=where).inc()

    def webhook(self, outcome: str) -> None:
        """Count one finished webhook delivery."""
        self.webhooks.labels(outcome).inc()

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``port`` from a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)
        log.info("worker metrics on http://%s:%d/metrics", address, port)
