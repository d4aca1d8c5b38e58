"""The API's own metrics: request latency by route, storage errors; and the /metrics answer."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from service.metrics.multiprocess import DIRECTORY_VARIABLE, in_multiprocess_mode


def _ensure_multiprocess_dir() -> None:
    # prometheus_client opens its value files there as soon as a metric is made: a directory
    # named but not yet created (a fresh emptyDir mount point, a container's /tmp) must exist.
    path = os.environ.get(DIRECTORY_VARIABLE)
    if path:
        os.makedirs(path, exist_ok=True)


_ensure_multiprocess_dir()

#: The metrics of this process; in multiprocess mode their values live in files that
#: MultiProcessCollector sums over every gunicorn worker.
PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_SECONDS = Histogram(
    "finetune_api_request_duration_seconds",
    "API request latency by route (the URL rule, not the raw path), method and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=PROCESS_REGISTRY,
)
STORAGE_ERRORS = Counter(
    "finetune_storage_errors",
    "Storage failures seen by the API (requests answered 503, readiness, metrics counts).",
    ["process", "where"],
    registry=PROCESS_REGISTRY,
)
#: Where the API counts storage failures: a request answered 503, /readyz, the job counts.
STORAGE_ERROR_PLACES = ("request", "readyz", "metrics")


def multiprocess_dir() -> str | None:
    """The multiprocess directory where this process's metrics are kept there, else None.

    A process that imported prometheus_client before ``PROMETHEUS_MULTIPROC_DIR`` was set keeps
    its values in memory: it reports those rather than an empty directory.
    """
    path = os.environ.get(DIRECTORY_VARIABLE)
    return path if path and os.path.isdir(path) and in_multiprocess_mode() else None


def count_storage_error(where: str) -> None:
    """Count one storage failure seen by the API at ``where`` (one of STORAGE_ERROR_PLACES)."""
    STORAGE_ERRORS.labels(process="api", where=where).inc()


def install(app: Flask) -> None:
    """Time every request (the route label is the URL rule: bounded cardinality); start at 0.

    Every storage-error series exists from the start, so a scrape shows it before the first
    failure. ``inc(0)`` rather than ``labels()`` alone: in multiprocess mode it opens this
    process's value file even where the series was made before gunicorn forked this worker.
    """
    for where in STORAGE_ERROR_PLACES:
        STORAGE_ERRORS.labels(process="api", where=where).inc(0)

    @app.before_request
    def _start_timer() -> None:
        g.finetune_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("finetune_started", None)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            REQUEST_SECONDS.labels(request.method, rule, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response


def render(store_collector: Collector) -> Response:
    """The Prometheus text of this API: process metrics (summed over processes) + store gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Delegate(PROCESS_REGISTRY))
    registry.register(store_collector)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class _Delegate(Collector):
    """Collects another registry's metrics (a collector may belong to one registry only)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        """Everything the other registry has."""
        return self._registry.collect()
