"""The service's settings table: every ``FINETUNE_*`` variable of the API, worker and trainer.

Each field of ``Config`` is one setting, stated once in its ``setting(...)`` row: variable,
default, accepted form, meaning. ``Config.from_env()`` reads them all at start-up (an invalid
value fails there, naming the variable); the README's table is generated from the rows
(``python -m service settings --markdown``) and a test keeps the two equal. The standard AWS
variables are boto3's own, read by boto3.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service import settings
from service.settings import choice, flag, integer, number, path, setting, text
from service.storage.client import ADDRESSING_STYLES

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
SECONDS = number(above=True)


def default_state_uri() -> str:
    """``file://`` of ``./finetune-data`` in the current directory: the embedded default."""
    return "file://" + str(Path("finetune-data").resolve())


def default_work_dir() -> Path:
    """``finetune-work`` in the system's temporary directory."""
    return Path(tempfile.gettempdir()) / "finetune-work"


def _state_is_local(values: Mapping[str, Any]) -> bool:
    return urlsplit(str(values["state_uri"])).scheme == "file"


@dataclass(frozen=True)
class Config:
    """Settings shared by the API, the worker and (through its request) the trainer.

    One field per setting; the field's ``setting(...)`` says what it means. Built with
    ``Config.from_env()`` in every process, or directly (tests) with keyword arguments.
    """

    state_uri: str = setting(
        "FINETUNE_STATE_URI",
        text(),
        "where job records live: `s3://bucket/prefix` or `file:///path`",
        factory=default_state_uri,
        shown="`file://$PWD/finetune-data`",
    )
    s3_addressing_style: str | None = setting(
        "FINETUNE_S3_ADDRESSING_STYLE",
        choice(*ADDRESSING_STYLES),
        "`path`, `virtual` or `auto`",
        default=None,
        shown="`path` with a custom endpoint, else `auto`",
    )
    # setting() is dataclasses.field with the row as metadata, not a shared default (RUF009).
    work_dir: Path = setting(  # noqa: RUF009
        "FINETUNE_WORK_DIR",
        path(),
        "local scratch for staged inputs and outputs",
        factory=default_work_dir,
        shown="`$TMPDIR/finetune-work`",
    )
    allow_local_storage: bool = setting(
        "FINETUNE_ALLOW_LOCAL_STORAGE",
        flag(),
        "`1`: job specs may name `file://` URIs",
        default=True,
        derive=_state_is_local,
        shown="on where the state is local",
    )
    lease_seconds: float = setting(
        "FINETUNE_LEASE_SECONDS",
        SECONDS,
        "how long a worker's claim lasts without a heartbeat",
        default=60.0,
    )
    heartbeat_seconds: float = setting(
        "FINETUNE_HEARTBEAT_SECONDS",
        SECONDS,
        "how often a worker renews its lease and reports progress",
        default=5.0,
    )
    # 0.5 s: a job is picked up within the poll interval plus a claim, so 1 s could not give
    # a pickup p95 under 1 s.
    poll_seconds: float = setting(
        "FINETUNE_POLL_SECONDS",
        SECONDS,
        "how often an idle worker looks for work (one listing of the queue index each time; "
        "pickup takes up to this plus a claim)",
        default=0.5,
    )
    max_body_bytes: int = setting(
        "FINETUNE_MAX_BODY_BYTES",
        integer(unit="bytes"),
        "largest request body (`413` above it)",
        default=1024 * 1024,
    )
    auth_file: Path | None = setting(  # noqa: RUF009
        "FINETUNE_AUTH_FILE",
        path(),
        "tokens, tenants and their storage prefixes (see [Security](#security))",
        default=None,
        shown="unset: open mode",
    )
    max_archive_bytes: int = setting(
        "FINETUNE_MAX_ARCHIVE_BYTES",
        integer(unit="bytes"),
        "most bytes a dataset `.zip`/`.tar.gz` may unpack to",
        default=20 * 1024**3,
        shown="`21474836480` (20 GiB)",
    )
    max_archive_ratio: float = setting(
        "FINETUNE_MAX_ARCHIVE_RATIO",
        number(above=True),
        "most bytes a dataset archive may unpack to per byte it holds (small archives "
        "excepted; checked before anything is unpacked)",
        default=100.0,
    )
    max_archive_files: int = setting(
        "FINETUNE_MAX_ARCHIVE_FILES",
        integer(unit="files"),
        "most files a dataset archive may hold",
        default=1_000_000,
    )
    max_input_pixels: int = setting(
        "FINETUNE_MAX_INPUT_PIXELS",
        integer(unit="pixels"),
        "most height x width of a base model's image input (refused before the model is "
        "built, in the dry run and the job)",
        default=4096 * 4096,
        shown="`16777216` (4096 x 4096)",
    )
    max_model_params: int = setting(
        "FINETUNE_MAX_MODEL_PARAMS",
        integer(unit="parameters"),
        "most parameters of a base model (its stored weights counted before it is built)",
        default=1_000_000_000,
    )
    dry_run_timeout_seconds: float = setting(
        "FINETUNE_DRY_RUN_TIMEOUT_SECONDS",
        SECONDS,
        "time limit of `POST /v1/jobs/validate` (`504` past it)",
        default=120.0,
    )
    dry_run_samples_per_class: int = setting(
        "FINETUNE_DRY_RUN_SAMPLES_PER_CLASS",
        integer(unit="images"),
        "images per class the dry run downloads",
        default=4,
    )
    dry_run_concurrency: int = setting(
        "FINETUNE_DRY_RUN_CONCURRENCY",
        integer(),
        "dry runs at once per worker (`503` when no worker takes one)",
        default=2,
    )
    log_level: str = setting(
        "FINETUNE_LOG_LEVEL", choice(*LOG_LEVELS, upper=True), "log level", default="INFO"
    )
    log_format: str = setting(
        "FINETUNE_LOG_FORMAT",
        choice(*LOG_FORMATS),
        "`text`, or `json`: one JSON object per line, with `job_id` on every line of a job",
        default="text",
    )
    webhook_secret: str | None = setting(
        "FINETUNE_WEBHOOK_SECRET",
        text(),
        "HMAC-SHA256 key that signs webhooks (unset: sent unsigned, the log says so)",
        default=None,
        secret=True,
    )
    webhook_allow_private: bool = setting(
        "FINETUNE_WEBHOOK_ALLOW_PRIVATE",
        flag(),
        "`1`: webhooks may reach loopback, link-local and private addresses",
        default=False,
        shown="off",
    )
    webhook_max_attempts: int = setting(
        "FINETUNE_WEBHOOK_MAX_ATTEMPTS", integer(unit="tries"), "tries per webhook", default=5
    )
    webhook_backoff_seconds: float = setting(
        "FINETUNE_WEBHOOK_BACKOFF_SECONDS",
        number(),
        "first webhook retry delay (doubled each time)",
        default=2.0,
    )
    webhook_timeout_seconds: float = setting(
        "FINETUNE_WEBHOOK_TIMEOUT_SECONDS",
        SECONDS,
        "per-try webhook connect and read timeout",
        default=10.0,
    )
    worker_metrics_port: int | None = setting(
        "FINETUNE_WORKER_METRICS_PORT",
        integer(minimum=1, maximum=65535),
        "port where a worker serves its Prometheus metrics",
        default=None,
        shown="unset: not served",
    )
    metrics_cache_seconds: float = setting(
        "FINETUNE_METRICS_CACHE_SECONDS",
        number(),
        "how long `/metrics` reuses its count of jobs",
        default=10.0,
    )
    metrics_scan_limit: int = setting(
        "FINETUNE_METRICS_SCAN_LIMIT",
        integer(unit="jobs"),
        "how many of the newest jobs `/metrics` counts by status",
        default=1000,
    )
    shutdown_grace_seconds: float = setting(
        "FINETUNE_SHUTDOWN_GRACE_SECONDS",
        number(),
        "worker: after SIGTERM, how long it may keep trying to hand its job back",
        default=90.0,
    )
    sweep_seconds: float = setting(
        "FINETUNE_SWEEP_SECONDS",
        SECONDS,
        "how often a worker looks for jobs whose worker was lost",
        default=15.0,
    )
    min_batch_size: int = setting(
        "FINETUNE_MIN_BATCH_SIZE",
        integer(),
        "out-of-memory retries halve the batch size down to this",
        default=4,
    )
    warm_trainer: bool = setting(
        "FINETUNE_WARM_TRAINER",
        flag(),
        "worker: keep the next job's trainer process started, TensorFlow already imported "
        "(`0`: start it when the job comes, saving an idle process's few hundred MB)",
        default=True,
    )
    data_cache_mb: float | None = setting(
        "FINETUNE_DATA_CACHE_MB",
        number(unit="megabytes"),
        "trainer: most MB of decoded images kept in memory; a dataset that does not fit is "
        "streamed from its files every epoch (`0`: always stream)",
        default=None,
        shown="a quarter of the machine's memory",
    )
    max_gpus_per_job: int = setting(
        "FINETUNE_MAX_GPUS_PER_JOB",
        integer(unit="devices"),
        "API: the most `resources.gpus` a job may ask for (a `422` above it)",
        default=8,
    )
    logical_devices: int | None = setting(
        "FINETUNE_LOGICAL_DEVICES",
        integer(unit="devices"),
        "worker on a machine without accelerators (tests, CI): its trainer splits the CPU into "
        "this many logical devices and offers them as that many devices (`resources.gpus`)",
        default=None,
        shown="unset: one CPU device",
    )
    # No device here can be made to run out of memory on demand, and the worker's retry with
    # half the batch must be tested through the real child process: unset in deployments.
    fault_oom_above_batch: int | None = setting(
        "FINETUNE_FAULT_OOM_ABOVE_BATCH",
        integer(),
        "tests only: a batch size above this fails as out of memory",
        default=None,
        documented=False,
    )
    flask: Mapping[str, Any] = setting(
        "FINETUNE_FLASK_",
        settings.json_or_text(),
        "API: Flask's setting `<KEY>` (`__` nests), the value read as JSON where it parses",
        factory=dict,
        shown="unset",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read every setting from ``env`` (default ``os.environ``); unset ones keep defaults.

        Raises:
            SettingError: A variable's value is not of its accepted form (the message names
                the variable and the form).
        """
        return settings.load(cls, env)
