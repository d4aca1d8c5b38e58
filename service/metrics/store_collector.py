"""Gauges computed from the job store at scrape time: jobs by status, queue depth."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.jobs import JobStore
from service.jobs.ids import is_job_id, timestamp_ms
from service.jobs.record import JobStatus
from service.storage.errors import StorageError

log = logging.getLogger(__name__)

#: Queue markers counted at most (the gauge saturates there rather than listing forever).
MAX_QUEUE_COUNT = 10_000


class StoreCollector(Collector):
    """Counts jobs by status among the newest ``scan_limit`` and the queued ones.

    Counting reads job records, so the numbers are cached for ``cache_seconds``: scrapes by
    several Prometheus servers or replicas do not multiply the reads.

    Args:
        jobs: The job store.
        cache_seconds: How long a count is reused.
        scan_limit: How many of the newest jobs are counted by status.
        on_storage_error: Called when the store cannot be read (the storage-error counter).
    """

    def __init__(
        self,
        jobs: JobStore,
        *,
        cache_seconds: float = 10.0,
        scan_limit: int = 1000,
        on_storage_error: Callable[[], None] | None = None,
    ) -> None:
        self._jobs = jobs
        self._cache_seconds = cache_seconds
        self._scan_limit = scan_limit
        self._on_storage_error = on_storage_error
        self._lock = threading.Lock()
        self._cached_at = float("-inf")
        self._families: list[GaugeMetricFamily] = []

    def describe(self) -> list[GaugeMetricFamily]:
        """Nothing up front: describing must not read the store."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The cached families, refreshed where older than ``cache_seconds``."""
        with self._lock:
            if time.monotonic() - self._cached_at > self._cache_seconds:
                self._families = self._count()
                self._cached_at = time.monotonic()
            yield from self._families

    def _count(self) -> list[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "finetune_job_store_up", "1 where the last count of jobs could read the job store."
        )
        try:
            queued = self._jobs.queued_ids(limit=MAX_QUEUE_COUNT)
            records, more = self._jobs.list(limit=self._scan_limit, scan_limit=self._scan_limit)
        except StorageError as exc:
            log.warning("metrics: cannot count jobs: %s", exc)
            if self._on_storage_error is not None:
                self._on_storage_error()
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        depth = GaugeMetricFamily(
            "finetune_queue_depth",
            f"Jobs waiting for a worker (queue markers; saturates at {MAX_QUEUE_COUNT}).",
        )
        depth.add_metric([], len(queued))
        oldest = GaugeMetricFamily(
            "finetune_queue_oldest_age_seconds", "Age of the oldest queued job (0 when none)."
        )
        ages = [time.time() - timestamp_ms(i) / 1000 for i in queued[:1] if is_job_id(i)]
        oldest.add_metric([], max(ages[0], 0.0) if ages else 0.0)
        by_status = GaugeMetricFamily(
            "finetune_jobs",
            f"Jobs by status among the newest {self._scan_limit} jobs.",
            labels=["status"],
        )
        counts = Counter(str(record.status) for record in records)
        for status in JobStatus:
            by_status.add_metric([str(status)], counts.get(str(status), 0))
        truncated = GaugeMetricFamily(
            "finetune_jobs_count_truncated",
            "1 where more jobs exist than finetune_jobs counts (FINETUNE_METRICS_SCAN_LIMIT).",
        )
        truncated.add_metric([], 1 if more else 0)
        return [up, depth, oldest, by_status, truncated]
