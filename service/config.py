"""Configuration from the environment (``FINETUNE_*`` and the standard AWS variables)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.storage.uri import parse_uri


def default_state_uri() -> str:
    """``file://`` of ``./finetune-data`` in the current directory: the embedded default."""
    return "file://" + str(Path("finetune-data").resolve())


@dataclass(frozen=True)
class Config:
    """Settings shared by the API and the worker.

    Attributes:
        state_uri: Where job records live (``FINETUNE_STATE_URI``).
        work_dir: Local scratch for staged inputs and outputs (``FINETUNE_WORK_DIR``).
        allow_local_storage: Whether specs may name ``file://`` URIs
            (``FINETUNE_ALLOW_LOCAL_STORAGE``; default: where the state itself is local).
        lease_seconds: How long a worker's claim lasts without a heartbeat.
        heartbeat_seconds: How often a worker renews its lease and reports progress.
        poll_seconds: How often an idle worker looks for queued jobs (0.5 s: a job is picked up
            within the poll interval plus a claim, so 1 s could not give a pickup p95 under 1 s;
            each look is one listing of the queue index).
        max_body_bytes: Largest request body the API accepts.
        sweep_seconds: How often a worker looks for jobs whose lease ran out.
        shutdown_grace_seconds: On SIGTERM, how long a worker may take to hand its job back.
        min_batch_size: The smallest batch size an out-of-memory retry halves down to.
        webhook_secret: Service-wide HMAC key for webhook signatures
            (``FINETUNE_WEBHOOK_SECRET``; unset: webhooks go out unsigned, and the log says so).
        webhook_allow_private: Whether webhook URLs may point at loopback, link-local or
            private addresses (``FINETUNE_WEBHOOK_ALLOW_PRIVATE=1``; off by default: no SSRF).
        webhook_max_attempts: Deliveries tried per final status (``FINETUNE_WEBHOOK_MAX_ATTEMPTS``).
        webhook_backoff_seconds: First retry delay, doubled each time
            (``FINETUNE_WEBHOOK_BACKOFF_SECONDS``).
        webhook_timeout_seconds: Per-attempt connect and read timeout
            (``FINETUNE_WEBHOOK_TIMEOUT_SECONDS``).
        worker_metrics_port: Where a worker serves its Prometheus metrics
            (``FINETUNE_WORKER_METRICS_PORT``; unset: not served).
        metrics_cache_seconds: How long the API reuses its count of jobs by status
            (``FINETUNE_METRICS_CACHE_SECONDS``).
        metrics_scan_limit: How many of the newest jobs ``/metrics`` counts by status
            (``FINETUNE_METRICS_SCAN_LIMIT``).
        auth_file: The tokens, tenants and storage prefixes (``FINETUNE_AUTH_FILE``); None
            runs the API open, without authentication, for local use.
        max_archive_bytes: Most bytes a dataset archive may unpack to
            (``FINETUNE_MAX_ARCHIVE_BYTES``, default 20 GiB).
        max_archive_files: Most members a dataset archive may hold
            (``FINETUNE_MAX_ARCHIVE_FILES``, default 1,000,000).
        dry_run_timeout_seconds: How long ``POST /v1/jobs/validate`` may take to stage a sample
            and inspect it (``FINETUNE_DRY_RUN_TIMEOUT_SECONDS``, default 120).
        dry_run_samples_per_class: Images per class the dry run downloads
            (``FINETUNE_DRY_RUN_SAMPLES_PER_CLASS``, default 4).
        dry_run_concurrency: Dry runs one API process runs at once; more wait
            (``FINETUNE_DRY_RUN_CONCURRENCY``, default 2).
        warm_trainer: Whether a worker keeps a trainer child ready that has already imported
            TensorFlow, so a job does not wait for that import (``FINETUNE_WARM_TRAINER``,
            default on; ``0`` starts each job's child only when the job comes, saving the idle
            child's memory).
        data_cache_mb: Most megabytes of decoded images a training job keeps in memory
            (``FINETUNE_DATA_CACHE_MB``; unset: a quarter of the machine's memory; ``0`` streams
            every dataset from the staged files each epoch).
        fault_oom_above_batch: Test-only fault injection: the trainer fails as out of memory
            above this batch size (``FINETUNE_FAULT_OOM_ABOVE_BATCH``; unset in every deployment).
    """

    state_uri: str = field(default_factory=default_state_uri)
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "finetune-work")
    allow_local_storage: bool = True
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 0.5
    max_body_bytes: int = 1024 * 1024
    sweep_seconds: float = 15.0
    shutdown_grace_seconds: float = 90.0
    min_batch_size: int = 4
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_allow_private: bool = False
    webhook_max_attempts: int = 5
    webhook_backoff_seconds: float = 2.0
    webhook_timeout_seconds: float = 10.0
    worker_metrics_port: int | None = None
    metrics_cache_seconds: float = 10.0
    metrics_scan_limit: int = 1000
    auth_file: Path | None = None
    max_archive_bytes: int = 20 * 1024**3
    max_archive_files: int = 1_000_000
    dry_run_timeout_seconds: float = 120.0
    dry_run_samples_per_class: int = 4
    dry_run_concurrency: int = 2
    warm_trainer: bool = True
    data_cache_mb: float | None = None
    fault_oom_above_batch: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read the ``FINETUNE_*`` variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        state_uri = env.get("FINETUNE_STATE_URI") or default_state_uri()
        state_is_local = parse_uri(state_uri).scheme == "file"
        allow_local = env.get("FINETUNE_ALLOW_LOCAL_STORAGE")
        defaults = cls()
        return cls(
            state_uri=state_uri,
            work_dir=Path(env.get("FINETUNE_WORK_DIR") or defaults.work_dir),
            allow_local_storage=state_is_local if allow_local is None else allow_local == "1",
            lease_seconds=float(env.get("FINETUNE_LEASE_SECONDS") or defaults.lease_seconds),
            heartbeat_seconds=float(
                env.get("FINETUNE_HEARTBEAT_SECONDS") or defaults.heartbeat_seconds
            ),
            poll_seconds=float(env.get("FINETUNE_POLL_SECONDS") or defaults.poll_seconds),
            max_body_bytes=int(env.get("FINETUNE_MAX_BODY_BYTES") or defaults.max_body_bytes),
            sweep_seconds=float(env.get("FINETUNE_SWEEP_SECONDS") or defaults.sweep_seconds),
            shutdown_grace_seconds=float(
                env.get("FINETUNE_SHUTDOWN_GRACE_SECONDS") or defaults.shutdown_grace_seconds
            ),
            min_batch_size=int(env.get("FINETUNE_MIN_BATCH_SIZE") or defaults.min_batch_size),
            **_observability_from_env(env, defaults),
            auth_file=Path(env["FINETUNE_AUTH_FILE"]) if env.get("FINETUNE_AUTH_FILE") else None,
            max_archive_bytes=int(
                env.get("FINETUNE_MAX_ARCHIVE_BYTES") or defaults.max_archive_bytes
            ),
            max_archive_files=int(
                env.get("FINETUNE_MAX_ARCHIVE_FILES") or defaults.max_archive_files
            ),
            dry_run_timeout_seconds=float(
                env.get("FINETUNE_DRY_RUN_TIMEOUT_SECONDS") or defaults.dry_run_timeout_seconds
            ),
            dry_run_samples_per_class=int(
                env.get("FINETUNE_DRY_RUN_SAMPLES_PER_CLASS") or defaults.dry_run_samples_per_class
            ),
            dry_run_concurrency=int(
                env.get("FINETUNE_DRY_RUN_CONCURRENCY") or defaults.dry_run_concurrency
            ),
            **_performance_from_env(env),
        )


def _observability_from_env(env: Mapping[str, str], defaults: Config) -> dict[str, Any]:
    """Webhook and metrics settings (issue 6), kept apart so other settings merge cleanly."""
    port = env.get("FINETUNE_WORKER_METRICS_PORT")
    return {
        "webhook_secret": env.get("FINETUNE_WEBHOOK_SECRET") or None,
        "webhook_allow_private": env.get("FINETUNE_WEBHOOK_ALLOW_PRIVATE") == "1",
        "webhook_max_attempts": int(
            env.get("FINETUNE_WEBHOOK_MAX_ATTEMPTS") or defaults.webhook_max_attempts
        ),
        "webhook_backoff_seconds": float(
            env.get("FINETUNE_WEBHOOK_BACKOFF_SECONDS") or defaults.webhook_backoff_seconds
        ),
        "webhook_timeout_seconds": float(
            env.get("FINETUNE_WEBHOOK_TIMEOUT_SECONDS") or defaults.webhook_timeout_seconds
        ),
        "worker_metrics_port": int(port) if port else None,
        "metrics_cache_seconds": float(
            env.get("FINETUNE_METRICS_CACHE_SECONDS") or defaults.metrics_cache_seconds
        ),
        "metrics_scan_limit": int(
            env.get("FINETUNE_METRICS_SCAN_LIMIT") or defaults.metrics_scan_limit
        ),
    }


def _performance_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Worker performance settings (issue 7), kept apart so other settings merge cleanly."""
    cache = (env.get("FINETUNE_DATA_CACHE_MB") or "").strip()
    fault = env.get("FINETUNE_FAULT_OOM_ABOVE_BATCH")
    try:
        data_cache_mb = float(cache) if cache else None
    except ValueError:
        data_cache_mb = -1.0
    if data_cache_mb is not None and data_cache_mb < 0:
        raise ValueError(
            f"FINETUNE_DATA_CACHE_MB must be a number of megabytes. Received: {cache!r}"
        )
    return {
        "warm_trainer": env.get("FINETUNE_WARM_TRAINER", "1") != "0",
        "data_cache_mb": data_cache_mb,
        "fault_oom_above_batch": int(fault) if fault else None,
    }
