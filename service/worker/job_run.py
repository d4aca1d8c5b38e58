"""One attempt at one job: stage, train (resuming from a checkpoint), gate, publish, promote."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from service.contract.layout import MANIFEST_FILE
from service.contract.messages import (
    CheckpointWritten,
    EpochEnded,
    Info,
    PhaseStarted,
    ProgressMessage,
)
from service.contract.plan import JobPlan, with_batch_size
from service.contract.request import ChampionModel, TrainingOutcome, TrainingRequest
from service.contract.uri import parse_uri
from service.jobs import JobRecord, JobStore
from service.jobs.aliases import Alias, AliasStore, AliasTarget
from service.jobs.checkpoints import CheckpointStore
from service.jobs.clock import parse, utcnow
from service.jobs.errors import InvalidAlias, OutputTaken
from service.jobs.outputs import CLAIM_FILE, OutputClaims
from service.storage.errors import StorageError
from service.worker.attempt_dirs import lock_path
from service.worker.champions import stage_champion
from service.worker.child_runner import TrainerPool, run_training
from service.worker.errors import JobAbandoned, JobCancelled, JobFailure, JobInterrupted
from service.worker.faults import disk_full, is_disk_full, needed_bytes
from service.worker.gate import check_gate
from service.worker.heartbeat import Heartbeat
from service.worker.kernel_settings import kernel_setting_for
from service.worker.manifest import build_manifest
from service.worker.native_crash import TrainerCrashed, crash_retry_environment
from service.worker.staging import StagedInputs, Stager
from service.worker.visuals import prepare_visuals

log = logging.getLogger(__name__)

#: What an attempt writes to its scratch in each phase, for the disk_full message.
_WRITING_IN = {
    "downloading": "downloading the job's inputs",
    "loading": "the trainer loaded the model and the data",
    "training": "training (checkpoints, TensorBoard logs)",
    "exporting": "exporting the model",
    "uploading": "drawing the history plot before the upload",
}


class JobRun:
    """Runs one claimed attempt; raises JobFailure, JobCancelled, JobAbandoned or JobInterrupted.

    Args:
        record: The record as claimed.
        jobs: The job store.
        checkpoints: Where checkpoints are kept between attempts.
        stager: Storage I/O for inputs and outputs.
        heartbeat: The running heartbeat of this attempt (progress and events go through it).
        job_dir: Local scratch for this attempt.
        work_dir: The worker's scratch directory (FINETUNE_WORK_DIR) that holds ``job_dir``;
            a full disk is reported with its name and free space.
        stopping: Set when the worker must hand the job back (SIGTERM).
        min_batch_size: Out-of-memory retries halve the batch size down to this (each halving
            is an ``oom_retry`` event); a SIGKILL that the memory cgroup does not explain is
            retried once at the same batch size (a ``killed_retry`` event).
        data_cache_mb: The trainer's cache of decoded images (Config.data_cache_mb).
        model_limits: Most input pixels and parameters of the base model
            (Config.max_input_pixels, Config.max_model_params); None: unchecked.
        fault_oom_above_batch: Test-only (Config.fault_oom_above_batch).
        on_message: Also sees every message of the trainer (metrics).
        trainers: Where the trainer child comes from (a warm one, child_runner.TrainerPool); None
            starts a fresh child for every run.
    """

    def __init__(
        self,
        record: JobRecord,
        *,
        jobs: JobStore,
        checkpoints: CheckpointStore,
        stager: Stager,
        heartbeat: Heartbeat,
        job_dir: Path,
        work_dir: Path,
        stopping: threading.Event,
        min_batch_size: int,
        data_cache_mb: float | None = None,
        model_limits: tuple[int, int] | None = None,
        fault_oom_above_batch: int | None = None,
        on_message: Callable[[ProgressMessage], None] | None = None,
        trainers: TrainerPool | None = None,
    ) -> None:
        self.record = record
        self.jobs = jobs
        self.checkpoints = checkpoints
        self.stager = stager
        self.heartbeat = heartbeat
        self.job_dir = job_dir
        self.work_dir = work_dir
        self.stopping = stopping
        self.min_batch_size = min_batch_size
        self.data_cache_mb = data_cache_mb
        self.model_limits = model_limits
        self.fault_oom_above_batch = fault_oom_above_batch
        self.published: list[str] = []
        self.champion: ChampionModel | None = None
        self._observe = on_message
        self._run_training = run_training if trainers is None else trainers.train
        self._phase = "starting"
        self._first_started = parse(record.started_at) if record.started_at else utcnow()

    @cached_property
    def plan(self) -> JobPlan:
        """The job's spec, read once (first used inside execute, where failures are handled)."""
        return JobPlan.from_spec(self.record.spec)

    # supervision -----------------------------------------------------------------------
    def watchdog(self) -> None:
        """Called about once a second: stop for a cancel, a lost lease, a signal, a timeout."""
        if self.heartbeat.lost:
            raise JobAbandoned(self.record.id)
        if self.heartbeat.cancel_requested:
            raise JobCancelled(self.record.id)
        if self.stopping.is_set():
            raise JobInterrupted(self.record.id)
        limit = self.plan.limits.max_runtime_seconds
        if (utcnow() - self._first_started).total_seconds() > limit:
            raise JobFailure(
                "timeout",
                f"The job ran past limits.max_runtime_seconds ({limit} s) and was stopped. "
                "Raise the limit or train fewer epochs.",
            )

    def phase(self, phase: str) -> None:
        """Record a new phase in the job's progress and events."""
        self.heartbeat.update(progress={**self.heartbeat.progress, "phase": phase})
        self._phase = phase
        self.heartbeat.event("phase", f"Phase {phase}.", {"phase": phase})
        self.heartbeat.flush()

    # the attempt -----------------------------------------------------------------------
    def execute(self) -> tuple[dict[str, Any], dict[str, float]]:
        """Run the attempt to its result; returns (result, final metrics).

        A full disk anywhere (staging, the trainer's writes, the plot) ends it as
        ``disk_full``, naming the work directory and its free space.
        """
        try:
            return self._execute()
        except (JobCancelled, JobAbandoned, JobInterrupted):
            raise
        except Exception as exc:
            # The trainer child says disk_full; the worker names its directory and free space.
            if is_disk_full(exc) or (isinstance(exc, JobFailure) and exc.code == "disk_full"):
                during = _WRITING_IN.get(self._phase, f"in phase {self._phase}")
                raise disk_full(self.work_dir, during, needed_bytes(exc)) from exc
            raise

    def _execute(self) -> tuple[dict[str, Any], dict[str, float]]:
        started = time.monotonic()
        self.phase("downloading")
        inputs = self.stager.stage_inputs(self.plan, self.job_dir / "inputs")
        if self.plan.compare_with is not None:
            self.champion = stage_champion(
                self.stager, self.plan.compare_with, self.job_dir / "inputs" / "champion"
            )
        self.watchdog()
        staged_at = time.monotonic()
        outcome = self._train(inputs)
        trained_at = time.monotonic()
        try:
            check_gate(self.plan.gate, outcome.metrics, outcome.evaluation, outcome.comparison)
        except JobFailure as missed:
            missed.details = {"evaluation": outcome.evaluation, "comparison": outcome.comparison}
            raise
        self.phase("uploading")
        timings = {
            "downloading": round(staged_at - started, 3),
            "trainer_total": round(trained_at - staged_at, 3),
        }
        result = self._publish(inputs, outcome, timings)
        self.watchdog()
        # Nothing may stop the job after this: the alias would point at removed outputs.
        if self.plan.promote_alias_uri is not None:
            result["promotion"] = self._promote(self.plan.promote_alias_uri, result)
        return result, outcome.metrics

    def _request(self, inputs: StagedInputs, batch_size: int) -> TrainingRequest:
        resume_from = None
        latest = self.checkpoints.latest(self.record.id)
        if latest is not None:
            resume_from = str(self.checkpoints.download(latest, self.job_dir / "resume"))
            self.heartbeat.event(
                "resumed",
                f"Resuming from the checkpoint after epoch {latest.epoch} "
                f"(phase {latest.phase_index + 1}); earlier epochs are not repeated.",
                {
                    "epoch": latest.epoch,
                    "phase_index": latest.phase_index,
                    "attempt": self.record.attempt,
                },
            )
        return TrainingRequest(
            job_id=self.record.id,
            spec=with_batch_size(self.record.spec, batch_size),
            base_model_path=str(inputs.base_model_path),
            train_path=str(inputs.train_path),
            validation_path=str(inputs.validation_path) if inputs.validation_path else None,
            output_dir=str(self.job_dir / "outputs"),
            checkpoint_dir=str(self.job_dir / "checkpoints"),
            scratch_dir=str(self.job_dir / "scratch"),
            resume_from=resume_from,
            train_format=inputs.train_format,
            validation_format=inputs.validation_format,
            test_path=str(inputs.test_path) if inputs.test_path else None,
            test_format=inputs.test_format,
            champion=self.champion,
            data_cache_mb=self.data_cache_mb,
            max_input_pixels=None if self.model_limits is None else self.model_limits[0],
            max_model_params=None if self.model_limits is None else self.model_limits[1],
            lock_path=str(lock_path(self.job_dir)),
            fault_oom_above_batch=self.fault_oom_above_batch,
        )

    def _train(self, inputs: StagedInputs) -> TrainingOutcome:
        """Train with the kernel settings the model needs; a native crash is retried once."""
        setting = kernel_setting_for(self.plan.training_plan, inputs.base_model_path)
        environment = {} if setting is None else setting.environment
        if setting is not None:
            self.heartbeat.event(
                "kernel_setting",
                setting.describe(),
                {
                    "environment": setting.environment,
                    "layers": [hazard.layer for hazard in setting.hazards],
                },
            )
        retried = False
        while True:
            try:
                return self._train_with_retries(inputs, environment)
            except TrainerCrashed as crash:
                retry = None if retried else crash_retry_environment(crash, environment)
                if retry is None:
                    if retried:
                        raise TrainerCrashed(
                            crash.signal_name, crash.whereabouts, crash.environment, retried=True
                        ) from crash
                    raise
                self.heartbeat.event(
                    "native_crash_retry",
                    f"The training process crashed with {crash.signal_name} "
                    f"{crash.whereabouts.describe()}; retrying once with oneDNN off "
                    f"({', '.join(f'{k}={v}' for k, v in retry.items())}).",
                    {
                        "signal": crash.signal_name,
                        **crash.whereabouts.data(),
                        "environment": retry,
                    },
                )
                environment, retried = retry, True

    def _train_with_retries(
        self, inputs: StagedInputs, environment: dict[str, str]
    ) -> TrainingOutcome:
        """Train; out of memory halves the batch size, an unexplained SIGKILL retries once.

        Each retry resumes from the last checkpoint and says so in an event, with the batch
        sizes: the user's batch size never changes silently.
        """
        batch_size = self.plan.training_plan.training.batch_size
        # A smaller batch stays a multiple of the job's devices (the schema's rule).
        devices = self.plan.training_plan.resources.gpus
        tried: list[int] = []
        killed = 0
        while True:
            try:
                return self._run_training(
                    self._request(inputs, batch_size),
                    self._on_message,
                    self.watchdog,
                    environment,
                )
            except JobFailure as failure:
                if failure.code == "killed" and killed == 0:
                    killed += 1
                    self.heartbeat.event(
                        "killed_retry",
                        f"{failure.message} Retrying once at the same batch size ({batch_size}).",
                        {"batch_size": batch_size, "next_batch_size": batch_size},
                    )
                    continue
                if failure.code == "killed":
                    raise JobFailure(
                        "killed",
                        f"{failure.message} It happened again on the retry at batch size "
                        f"{batch_size}; find what kills the worker's processes (its "
                        "container's limits, an operator's tooling), then resubmit the job.",
                    ) from failure
                if failure.code != "out_of_memory":
                    raise
                tried.append(batch_size)
                smaller = batch_size // 2 // devices * devices
                if smaller < self.min_batch_size:
                    sizes = ", ".join(str(size) for size in tried)
                    raise JobFailure(
                        "out_of_memory",
                        f"Training ran out of memory at every batch size tried ({sizes}; the "
                        f"floor is {self.min_batch_size}). Use a smaller dataset.image_size or "
                        "a smaller base model, or run on a worker with more memory.",
                    ) from failure
                self.heartbeat.event(
                    "oom_retry",
                    f"Out of memory at batch size {batch_size}; retrying with {smaller} "
                    f"(training.batch_size was {tried[0]}). {failure.message}",
                    {"batch_size": batch_size, "next_batch_size": smaller},
                )
                batch_size = smaller

    def _on_message(self, message: ProgressMessage) -> None:
        if self._observe is not None:
            self._observe(message)
        match message:
            case PhaseStarted(phase=phase):
                self.phase(phase)
            case EpochEnded():
                self._on_epoch(message)
            case CheckpointWritten():
                self._on_checkpoint(message)
            case Info(message=text, data=data):
                self.heartbeat.event("info", text, dict(data))

    def _on_epoch(self, message: EpochEnded) -> None:
        epoch, epochs = message.epoch, message.epochs
        metrics = {k: float(v) for k, v in message.metrics.items()}
        self.heartbeat.update(
            progress={
                "phase": "training",
                "epoch": epoch,
                "epochs": epochs,
                "percent": round(100.0 * epoch / max(epochs, 1), 1),
            },
            metrics=metrics,
        )
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self.heartbeat.event(
            "epoch",
            f"Epoch {epoch}/{epochs}: {summary}.",
            {
                "epoch": epoch,
                "epochs": epochs,
                "phase_index": message.phase_index,
                "metrics": metrics,
            },
        )
        self.heartbeat.flush()

    def _on_checkpoint(self, message: CheckpointWritten) -> None:
        try:
            self.checkpoints.save(
                self.record.id, Path(message.path), message.epoch, message.phase_index
            )
        except StorageError as exc:
            # Training goes on; a lost worker would then resume from an older checkpoint.
            log.warning(
                "job %s: checkpoint after epoch %s not uploaded: %s",
                self.record.id,
                message.epoch,
                exc,
            )

    def _publish(
        self, inputs: StagedInputs, outcome: TrainingOutcome, timings: dict[str, float]
    ) -> dict[str, Any]:
        output = parse_uri(self.plan.output_uri)
        uris = {
            "saved_model_uri": str(output.child(outcome.saved_model_dir + "/")),
            "keras_uri": str(output.child(outcome.keras_file)),
            "manifest_uri": str(output.child(MANIFEST_FILE)),
        }
        outputs_dir = self.job_dir / "outputs"
        visuals = prepare_visuals(
            outcome.history,
            outputs_dir,
            self.record.name or self.record.id,
            evaluation=outcome.evaluation,
            comparison=outcome.comparison,
        )
        upload_started = time.monotonic()
        names = [
            outcome.saved_model_dir,
            outcome.keras_file,
            *(name.rstrip("/") for name in visuals.values()),
        ]
        self._claim_output(str(output), names)
        self.published = [CLAIM_FILE, *names, MANIFEST_FILE]
        self.stager.upload_outputs(str(output), outputs_dir, names)
        uris.update({field: str(output.child(name)) for field, name in visuals.items()})
        timings["uploading"] = round(time.monotonic() - upload_started, 3)
        manifest = build_manifest(self.record, inputs, outcome, uris, timings)
        self.stager.put_bytes(uris["manifest_uri"], manifest)
        self.heartbeat.event("published", f"Model written to {output}.", uris)
        return {
            **uris,
            "metrics": outcome.metrics,
            "history": outcome.history,
            "class_names": outcome.class_names,
            "evaluation": outcome.evaluation,
            "comparison": outcome.comparison,
        }

    def _claim_output(self, output_uri: str, names: list[str]) -> None:
        """Claim ``output.uri`` before writing there (OutputClaims); with overwrite, first
        remove the manifest and the files this publish replaces, so that no manifest ever
        describes a mix of two jobs' files."""
        store, prefix = self.stager.open_store(output_uri)
        overwrite = self.plan.output_overwrite
        claims = OutputClaims(self.jobs)
        try:
            self.stager.during_publish(
                partial(claims.claim, store, prefix, output_uri, self.record.id, overwrite),
                f"claim {output_uri}",
            )
        except OutputTaken as exc:
            raise JobFailure("output_exists", str(exc), field="output.uri") from exc
        if overwrite:
            self.stager.during_publish(
                partial(self.stager.remove_outputs, output_uri, [MANIFEST_FILE, *names]),
                f"remove the model published under {output_uri} (output.overwrite)",
            )

    def _promote(self, alias_uri: str, result: dict[str, Any]) -> dict[str, Any]:
        """Make the published model the target of ``promote.alias_uri`` (aliases.py)."""
        target = AliasTarget(
            job_id=self.record.id,
            keras_uri=result["keras_uri"],
            saved_model_uri=result["saved_model_uri"],
            manifest_uri=result["manifest_uri"],
        )
        store, key = self.stager.open_store(alias_uri)
        aliases = AliasStore(store, key, alias_uri)
        written: list[Alias] = []
        try:
            self.stager.during_publish(
                lambda: written.append(aliases.promote(target)), f"promote to {alias_uri}"
            )
        except InvalidAlias as exc:
            raise JobFailure(
                "storage",
                f"promote.alias_uri: {exc}. Name a new key there, or an alias that a job "
                "with promote.alias_uri wrote; the model was not published.",
                field="promote.alias_uri",
            ) from exc
        alias = written[0]
        previous = alias.history[-1].target.to_dict() if alias.history else None
        promotion = {
            "alias_uri": alias_uri,
            "version": alias.current.version,
            "previous_target": previous,
        }
        self.heartbeat.event(
            "promoted",
            f"{alias_uri} now points at this job's model (version {alias.current.version}).",
            promotion,
        )
        return promotion

    def remove_partial_outputs(self) -> None:
        """Delete what a publish that did not finish wrote (manifest first: it marks success)."""
        if not self.published:
            return
        output_uri = self.plan.output_uri
        try:
            self.stager.remove_outputs(output_uri, list(reversed(self.published)))
        except StorageError as exc:
            log.warning(
                "job %s: partial outputs under %s not removed: %s", self.record.id, output_uri, exc
            )
