"""Configuration from the environment (``FINETUNE_*`` and the standard AWS variables)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
        poll_seconds: How often an idle worker looks for queued jobs.
        max_body_bytes: Largest request body the API accepts.
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
    """

    state_uri: str = field(default_factory=default_state_uri)
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "finetune-work")
    allow_local_storage: bool = True
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 1.0
    max_body_bytes: int = 1024 * 1024
    max_archive_bytes: int = 20 * 1024**3
    max_archive_files: int = 1_000_000
    dry_run_timeout_seconds: float = 120.0
    dry_run_samples_per_class: int = 4
    dry_run_concurrency: int = 2

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
                env.get("FINETUNE_DRY_RUN_SAMPLES_PER_CLASS")
                or defaults.dry_run_samples_per_class
            ),
            dry_run_concurrency=int(
                env.get("FINETUNE_DRY_RUN_CONCURRENCY") or defaults.dry_run_concurrency
            ),
        )
