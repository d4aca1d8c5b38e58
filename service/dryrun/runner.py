"""Staging a sample of a job's inputs and inspecting it in a spawned child, under a timeout."""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config import Config
from service.contract.plan import JobPlan
from service.contract.request import TrainingRequest
from service.dryrun import child_entry
from service.dryrun.errors import DryRunBusy, DryRunFailed, DryRunTimeout
from service.storage.resolver import Storage
from service.worker.archives import ArchiveLimits
from service.worker.errors import JobFailure
from service.worker.isolation import start_child
from service.worker.runner import stop_process
from service.worker.staging import Stager

log = logging.getLogger(__name__)

#: Spec field a staging failure of each error code belongs to, where its message names none.
_STAGING_FIELDS = {"invalid_model": "base_model.uri", "invalid_dataset": "dataset.train"}
_FIELD_PREFIXES = (
    "base_model.uri",
    "base_model.weights_uri",
    "dataset.train",
    "dataset.validation",
    "dataset.format",
)


@dataclass
class DryRunResult:
    """The verdict: field errors (dotted path -> messages), or none and a report."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """Whether the spec, model and data fit together."""
        return not self.errors


class DryRunner:
    """Runs dry runs for one API process, at most ``config.dry_run_concurrency`` at once.

    Args:
        config: Timeout, sample size, concurrency, archive caps and the scratch folder.
        storage: Opens the base model's and the data's storage.
    """

    def __init__(self, config: Config, storage: Storage) -> None:
        self.config = config
        self.stager = Stager(
            storage,
            ArchiveLimits(
                config.max_archive_bytes, config.max_archive_files, config.max_archive_ratio
            ),
        )
        self._slots = threading.BoundedSemaphore(max(1, config.dry_run_concurrency))

    def run(self, spec: dict[str, Any]) -> DryRunResult:
        """Stage a sample of ``spec``'s inputs and inspect it.

        Raises:
            DryRunBusy: Every slot stayed taken for the whole timeout.
            DryRunTimeout: It ran past ``config.dry_run_timeout_seconds``.
            DryRunFailed: The child failed unexpectedly.
        """
        deadline = time.monotonic() + self.config.dry_run_timeout_seconds
        if not self._slots.acquire(timeout=self.config.dry_run_timeout_seconds):
            raise DryRunBusy("every dry-run slot is taken")
        try:
            scratch_root = self.config.work_dir / "dry-runs"
            scratch_root.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix="dryrun-", dir=scratch_root))
            try:
                return self._run(spec, scratch, deadline)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        finally:
            self._slots.release()

    def _run(self, spec: dict[str, Any], scratch: Path, deadline: float) -> DryRunResult:
        try:
            inputs = self.stager.stage_inputs(
                JobPlan.from_spec(spec),
                scratch / "inputs",
                sample_per_class=self.config.dry_run_samples_per_class,
            )
        except JobFailure as failure:
            return DryRunResult(errors={_field_of(failure): [failure.message]})
        if time.monotonic() > deadline:
            raise DryRunTimeout("staging the sample took the whole timeout")
        request = TrainingRequest(
            job_id="dry-run",
            spec=spec,
            base_model_path=str(inputs.base_model_path),
            train_path=str(inputs.train_path),
            validation_path=str(inputs.validation_path) if inputs.validation_path else None,
            output_dir=str(scratch / "outputs"),
            train_format=inputs.train_format,
            validation_format=inputs.validation_format,
            mode="inspect",
            sampled=True,
        )
        message = _inspect_in_child(request, deadline)
        if message.get("type") != "result":
            log.error("dry run failed in its child:\n%s", message.get("traceback", ""))
            raise DryRunFailed("the inspecting process failed")
        report = dict(message.get("report") or {})
        report["sample"] = {
            "per_class": self.config.dry_run_samples_per_class,
            "files": {name: len(files) for name, files in inputs.dataset_files.items()},
        }
        return DryRunResult(errors=dict(message.get("errors") or {}), report=report)


def _inspect_in_child(request: TrainingRequest, deadline: float) -> dict[str, Any]:
    # Like the trainer, the child that reads a client's files gets no storage credentials.
    process, messages = start_child(child_entry.main, (request.to_dict(),), name="dry-run")
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DryRunTimeout("inspecting the model and data took too long")
            try:
                message: dict[str, Any] = messages.get(timeout=min(remaining, 1.0))
                return message
            except queue.Empty:
                if not process.is_alive():
                    try:
                        late: dict[str, Any] = messages.get(timeout=1.0)
                        return late
                    except queue.Empty:
                        raise DryRunFailed(
                            f"the inspecting process exited (code {process.exitcode})"
                        ) from None
    finally:
        stop_process(process)
        messages.close()
        messages.join_thread()


def _field_of(failure: JobFailure) -> str:
    if "the base model" in failure.message:
        return "base_model.uri"
    if "the weights file" in failure.message:
        return "base_model.weights_uri"
    for prefix in _FIELD_PREFIXES:
        if failure.message.startswith(prefix):
            return prefix
    return _STAGING_FIELDS.get(failure.code, "dataset.train")
