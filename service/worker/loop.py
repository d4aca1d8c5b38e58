"""The worker loop: claim a job, run it, record the outcome, repeat."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from service.context import Services
from service.jobs import JobRecord, JobStatus, LeaseLost
from service.storage.errors import StorageError
from service.storage.uri import parse_uri
from service.trainer.request import TrainingOutcome, TrainingRequest
from service.worker.archives import ArchiveLimits
from service.worker.errors import JobAbandoned, JobCancelled, JobFailure
from service.worker.gate import check_gate
from service.worker.heartbeat import Heartbeat
from service.worker.manifest import build_manifest
from service.worker.runner import run_training
from service.worker.staging import Stager

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """``host-pid-random``: unique per worker process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    """Claims queued jobs one at a time and runs each to a final status."""

    def __init__(self, services: Services, worker_id: str | None = None) -> None:
        self.services = services
        self.jobs = services.jobs
        self.config = services.config
        self.worker_id = worker_id or default_worker_id()
        self.stager = Stager(
            services.storage,
            ArchiveLimits(self.config.max_archive_bytes, self.config.max_archive_files),
        )
        self.stopping = threading.Event()

    def run_forever(self) -> None:
        """Work until ``stopping`` is set."""
        log.info("worker %s polling %s", self.worker_id, self.config.state_uri)
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except StorageError as exc:
                log.warning("storage unavailable while looking for work: %s", exc)
                ran = False
            if not ran:
                self.stopping.wait(self.config.poll_seconds)
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> bool:
        """Claim and run one job; False where none was queued."""
        record = self.jobs.claim_next(self.worker_id, self.config.lease_seconds)
        if record is None:
            return False
        self.run_job(record)
        return True

    def run_job(self, record: JobRecord) -> None:
        """Run a claimed job to a final status (or give it up where the lease was lost)."""
        job_dir = self.config.work_dir / record.id / f"attempt-{record.attempt}"
        heartbeat = Heartbeat(
            self.jobs,
            record.id,
            self.worker_id,
            interval=self.config.heartbeat_seconds,
            lease_seconds=self.config.lease_seconds,
            progress=record.progress,
        ).start()
        try:
            result, metrics = self._execute(record, job_dir, heartbeat)
        except JobCancelled:
            self._finish(
                record,
                heartbeat,
                JobStatus.CANCELLED,
                error={"code": "cancelled", "message": "Cancelled at the client's request."},
            )
        except JobAbandoned:
            log.warning("job %s: abandoned; its lease is held elsewhere", record.id)
            heartbeat.stop()
        except JobFailure as failure:
            log.info("job %s failed: %s", record.id, failure)
            self._finish(
                record,
                heartbeat,
                JobStatus.FAILED,
                error={"code": failure.code, "message": failure.message},
            )
        except Exception:
            log.exception("job %s: unexpected error", record.id)
            self._finish(
                record,
                heartbeat,
                JobStatus.FAILED,
                error={
                    "code": "internal",
                    "message": "Internal error in the worker; operators have the "
                    "details in its log. Retrying the job may help.",
                },
            )
        else:
            self._finish(record, heartbeat, JobStatus.SUCCEEDED, result=result, metrics=metrics)
        finally:
            shutil.rmtree(job_dir.parent, ignore_errors=True)

    # steps -----------------------------------------------------------------------------
    def _phase(self, record: JobRecord, heartbeat: Heartbeat, phase: str) -> None:
        heartbeat.update(progress={**heartbeat.progress, "phase": phase})
        heartbeat.flush()
        self.jobs.add_event(record.id, "phase", f"Phase {phase}.", {"phase": phase})

    def _watchdog(self, record: JobRecord, heartbeat: Heartbeat, started: float) -> None:
        if heartbeat.lost:
            raise JobAbandoned(record.id)
        if heartbeat.cancel_requested:
            raise JobCancelled(record.id)
        limit = record.spec["limits"]["max_runtime_seconds"]
        if time.monotonic() - started > limit:
            raise JobFailure(
                "timeout",
                f"The job ran past limits.max_runtime_seconds ({limit} s) "
                "and was stopped. Raise the limit or train fewer epochs.",
            )

    def _execute(
        self, record: JobRecord, job_dir: Path, heartbeat: Heartbeat
    ) -> tuple[dict[str, Any], dict[str, float]]:
        started = time.monotonic()
        spec = record.spec

        def watchdog() -> None:
            self._watchdog(record, heartbeat, started)

        self._phase(record, heartbeat, "downloading")
        inputs = self.stager.stage_inputs(spec, job_dir / "inputs")
        watchdog()
        staged_at = time.monotonic()
        request = TrainingRequest(
            job_id=record.id,
            spec=spec,
            base_model_path=str(inputs.base_model_path),
            train_path=str(inputs.train_path),
            validation_path=str(inputs.validation_path) if inputs.validation_path else None,
            output_dir=str(job_dir / "outputs"),
            train_format=inputs.train_format,
            validation_format=inputs.validation_format,
        )

        def on_message(message: dict[str, Any]) -> None:
            self._on_trainer_message(record, heartbeat, message)

        outcome = run_training(request, on_message, watchdog)
        trained_at = time.monotonic()
        check_gate(spec.get("gate"), outcome.metrics)
        self._phase(record, heartbeat, "uploading")
        result = self._publish(
            record,
            inputs,
            outcome,
            job_dir / "outputs",
            {
                "downloading": round(staged_at - started, 3),
                "trainer_total": round(trained_at - staged_at, 3),
            },
        )
        watchdog()
        return result, outcome.metrics

    def _on_trainer_message(
        self, record: JobRecord, heartbeat: Heartbeat, message: dict[str, Any]
    ) -> None:
        kind = message.get("type")
        if kind == "phase":
            self._phase(record, heartbeat, message["phase"])
        elif kind == "epoch":
            epoch, epochs = int(message["epoch"]), int(message["epochs"])
            metrics = {k: float(v) for k, v in message.get("metrics", {}).items()}
            heartbeat.update(
                progress={
                    "phase": "training",
                    "epoch": epoch,
                    "epochs": epochs,
                    "percent": round(100.0 * epoch / max(epochs, 1), 1),
                },
                metrics=metrics,
            )
            heartbeat.flush()
            summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            self.jobs.add_event(
                record.id,
                "epoch",
                f"Epoch {epoch}/{epochs}: {summary}.",
                {
                    "epoch": epoch,
                    "epochs": epochs,
                    "phase_index": message.get("phase_index", 0),
                    "metrics": metrics,
                },
            )
        elif kind == "info":
            self.jobs.add_event(
                record.id, "info", str(message.get("message", "")), dict(message.get("data") or {})
            )

    def _publish(
        self,
        record: JobRecord,
        inputs: Any,
        outcome: TrainingOutcome,
        outputs_dir: Path,
        timings: dict[str, float],
    ) -> dict[str, Any]:
        output = parse_uri(record.spec["output"]["uri"])
        uris = {
            "saved_model_uri": str(output.child(outcome.saved_model_dir + "/")),
            "keras_uri": str(output.child(outcome.keras_file)),
            "manifest_uri": str(output.child("manifest.json")),
        }
        upload_started = time.monotonic()
        self.stager.upload_outputs(
            str(output), outputs_dir, [outcome.saved_model_dir, outcome.keras_file]
        )
        timings["uploading"] = round(time.monotonic() - upload_started, 3)
        manifest = build_manifest(record, inputs, outcome, uris, timings)
        self.stager.put_bytes(uris["manifest_uri"], manifest)
        self.jobs.add_event(record.id, "published", f"Model written to {output}.", uris)
        return {
            **uris,
            "metrics": outcome.metrics,
            "history": outcome.history,
            "class_names": outcome.class_names,
        }

    def _finish(
        self,
        record: JobRecord,
        heartbeat: Heartbeat,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        heartbeat.stop()
        try:
            self.jobs.finish(
                record.id, self.worker_id, status, result=result, error=error, metrics=metrics
            )
        except LeaseLost:
            log.warning("job %s: could not record %s, the lease was lost", record.id, status)
            return
        message = {
            JobStatus.SUCCEEDED: "Job succeeded.",
            JobStatus.CANCELLED: "Job cancelled while running.",
            JobStatus.FAILED: f"Job failed: {error['message'] if error else ''}",
        }[status]
        self.jobs.add_event(record.id, str(status), message, {"error": error} if error else {})
