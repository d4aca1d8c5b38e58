"""The worker's dry runs: take a request the API left in storage, stage a sample, inspect it.

Runs in threads of its own beside the job loop (``Worker.run_forever`` starts
``FINETUNE_DRY_RUN_CONCURRENCY`` of them), so that a worker busy training still answers dry
runs. The inspection runs in a trainer child (``mode="inspect"``) from the same pool as the
jobs' children; the sample is removed after.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

from service.config import Config
from service.contract.messages import InspectionFinished, ProgressMessage
from service.contract.plan import JobPlan
from service.contract.request import TrainingRequest
from service.jobs.dry_runs import (
    INTERRUPTED,
    TIMED_OUT,
    DryRunRequest,
    DryRunResult,
    DryRunStore,
)
from service.storage.errors import StorageError
from service.worker.child_runner import TrainerPool
from service.worker.errors import JobFailure, JobInterrupted
from service.worker.staging import StagedInputs, Stager

log = logging.getLogger(__name__)

_INTERNAL = {
    "code": "internal",
    "message": "The dry run failed unexpectedly; the worker's log has the details.",
}


class DryRunner:
    """Takes dry runs from ``store`` and answers them, until ``stopping`` is set.

    Args:
        store: Where the API leaves requests and reads results.
        stager: Downloads the sample.
        trainers: Where the inspecting child comes from.
        config: Samples per class, scratch folder, poll and sweep intervals.
        worker_id: Written into the claim.
        stopping: Set when the worker shuts down.
    """

    def __init__(
        self,
        store: DryRunStore,
        stager: Stager,
        trainers: TrainerPool,
        config: Config,
        worker_id: str,
        stopping: threading.Event,
    ) -> None:
        self.store = store
        self.stager = stager
        self.trainers = trainers
        self.config = config
        self.worker_id = worker_id
        self.stopping = stopping
        self._next_sweep = 0.0

    def run_forever(self) -> None:
        """Answer dry runs until ``stopping`` is set."""
        while not self.stopping.is_set():
            try:
                self._sweep()
                answered = self.run_once()
            except StorageError as exc:
                log.warning("storage unavailable while looking for dry runs: %s", exc)
                answered = False
            if not answered:
                self.stopping.wait(self.config.poll_seconds)

    def run_once(self) -> bool:
        """Take and answer one dry run; False where none was waiting."""
        request = self.store.claim_next(self.worker_id)
        if request is None:
            return False
        log.info("dry run %s taken", request.id)
        self.store.finish(request.id, self.check(request))
        return True

    def check(self, request: DryRunRequest) -> DryRunResult:
        """Stage a sample of ``request.spec``'s inputs and inspect it; never raises."""
        deadline = time.monotonic() + request.timeout_seconds
        scratch_root = self.config.work_dir / "dry-runs"
        scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="dryrun-", dir=scratch_root))
        try:
            return self._check(request, scratch, deadline)
        except JobFailure as failure:
            if failure.field is not None:
                return DryRunResult(errors={failure.field: [failure.message]})
            return DryRunResult(failure={"code": failure.code, "message": failure.message})
        except JobInterrupted:
            return DryRunResult(
                failure={"code": INTERRUPTED, "message": "The worker is shutting down."}
            )
        except Exception:
            log.exception("dry run %s failed", request.id)
            return DryRunResult(failure=dict(_INTERNAL))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _check(self, request: DryRunRequest, scratch: Path, deadline: float) -> DryRunResult:
        samples = self.config.dry_run_samples_per_class
        inputs = self.stager.stage_inputs(
            JobPlan.from_spec(request.spec), scratch / "inputs", sample_per_class=samples
        )
        if time.monotonic() > deadline:
            raise JobFailure(TIMED_OUT, "staging the sample took the whole timeout")
        final = self.trainers.run(
            self._inspection(request, inputs, scratch), _ignore, self._watchdog, deadline
        )
        if not isinstance(final, InspectionFinished):
            raise JobFailure("internal", "The inspecting child answered with a training result.")
        report = dict(final.report)
        report["sample"] = {
            "per_class": samples,
            "files": {name: len(files) for name, files in inputs.dataset_files.items()},
        }
        return DryRunResult(errors=dict(final.errors), report=report)

    def _inspection(
        self, request: DryRunRequest, inputs: StagedInputs, scratch: Path
    ) -> TrainingRequest:
        return TrainingRequest(
            job_id=request.id,
            spec=request.spec,
            base_model_path=str(inputs.base_model_path),
            train_path=str(inputs.train_path),
            validation_path=str(inputs.validation_path) if inputs.validation_path else None,
            output_dir=str(scratch / "outputs"),
            train_format=inputs.train_format,
            validation_format=inputs.validation_format,
            mode="inspect",
            sampled=True,
            max_input_pixels=self.config.max_input_pixels,
            max_model_params=self.config.max_model_params,
        )

    def _watchdog(self) -> None:
        if self.stopping.is_set():
            raise JobInterrupted("dry run")

    def _sweep(self) -> None:
        """Remove what dry runs of an API that died left behind (every ``sweep_seconds``)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.config.sweep_seconds * random.uniform(0.75, 1.25)
        removed = self.store.sweep(older_than_seconds=2 * self.config.dry_run_timeout_seconds)
        if removed:
            log.info("removed %d dry run(s) left behind", removed)


def _ignore(message: ProgressMessage) -> None:
    """An inspection's progress messages concern nobody."""
