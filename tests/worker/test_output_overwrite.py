"""A job never replaces a published model unless output.overwrite is true: real worker, real
tiny Keras model, local storage. The jobs are queued straight into the job store, as a job
whose output appears only after its submit would be."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from schemas import JobSpecSchema
from service.context import Services
from service.jobs import JobRecord, JobStatus
from service.jobs.outputs import CLAIM_FILE
from service.worker import Worker
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import local_services

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    pretrain_tiny_cnn(root / "model.keras", epochs=2, per_class=20)
    write_image_folder(root / "train", ["a", "b"], per_class=12, digits=[0, 1])
    return {"model": root / "model.keras", "train": root / "train"}


def _spec(inputs: dict[str, Path], out: Path, **output: Any) -> dict[str, Any]:
    spec: dict[str, Any] = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{inputs['model']}"},
            "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap"},
            "freeze": "base",
            "training": {"epochs": 1, "seed": 3},
            "output": {"uri": f"file://{out}/", **output},
        }
    )
    return spec


def _run(services: Services, spec: dict[str, Any]) -> JobRecord:
    created = services.jobs.create(spec)
    assert Worker(services).run_once()
    return services.jobs.get(created.id)


def _digests(out: Path) -> dict[str, str]:
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }


def test_a_second_job_fails_output_exists_and_overwrite_replaces(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    services = local_services(tmp_path, heartbeat_seconds=0.5)
    out = tmp_path / "v1"
    first = _run(services, _spec(inputs, out))
    assert first.status is JobStatus.SUCCEEDED, first.error
    published = _digests(out)
    assert {"manifest.json", "model.keras", CLAIM_FILE} <= set(published)

    second = _run(services, _spec(inputs, out))
    assert second.status is JobStatus.FAILED
    assert second.error and second.error["code"] == "output_exists"
    assert f"file://{out}/" in second.error["message"]
    assert "output.overwrite" in second.error["message"]
    assert _digests(out) == published, "the first job's files are untouched"
    assert services.jobs.get(first.id).result == first.result, "and so is its record"

    third = _run(services, _spec(inputs, out, overwrite=True))
    assert third.status is JobStatus.SUCCEEDED, third.error
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["job_id"] == third.id
    assert json.loads((out / CLAIM_FILE).read_text())["job_id"] == third.id
    assert _digests(out)["model.keras"] != published["model.keras"]
