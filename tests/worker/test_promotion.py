"""promote.alias_uri through a real worker and real tiny Keras models, on local storage: the
alias moves only after a publish whose gate passed, keeps the earlier target in its history,
and an alias URI that holds something else fails the job with nothing published."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas import JobSpecSchema
from service.context import Services
from service.jobs import JobRecord, JobStatus
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


def _spec(inputs: dict[str, Path], out: Path, alias: Path, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = JobSpecSchema().load(
        {
            "base_model": {"uri": f"file://{inputs['model']}"},
            "dataset": {"train": f"file://{inputs['train']}/", "preprocessing": "rescale"},
            "head": {"cut_at": "gap"},
            "freeze": "base",
            "training": {"epochs": 1, "seed": 3},
            "output": {"uri": f"file://{out}/"},
            "promote": {"alias_uri": f"file://{alias}"},
            **extra,
        }
    )
    return spec


def _run(services: Services, spec: dict[str, Any]) -> JobRecord:
    created = services.jobs.create(spec)
    assert Worker(services).run_once()
    return services.jobs.get(created.id)


def test_promotions_move_the_alias_only_after_a_passed_gate(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    services = local_services(tmp_path, heartbeat_seconds=0.5)
    alias = tmp_path / "models" / "production.json"

    first = _run(services, _spec(inputs, tmp_path / "v1", alias))
    assert first.status is JobStatus.SUCCEEDED, first.error
    assert first.result is not None
    stored = json.loads(alias.read_text())
    assert stored["version"] == 1 and stored["history"] == []
    assert stored["target"] == {
        "job_id": first.id,
        "keras_uri": first.result["keras_uri"],
        "saved_model_uri": first.result["saved_model_uri"],
        "manifest_uri": first.result["manifest_uri"],
    }
    assert first.result["promotion"] == {
        "alias_uri": f"file://{alias}",
        "version": 1,
        "previous_target": None,
    }
    assert "promoted" in [event.type for event in services.jobs.read_events(first.id)]

    missed = _run(
        services,
        _spec(inputs, tmp_path / "v2", alias, gate={"metric": "accuracy", "min": 1.01}),
    )
    assert missed.error and missed.error["code"] == "gate_failed"
    assert json.loads(alias.read_text()) == stored, "a failed gate leaves the alias alone"
    assert not (tmp_path / "v2").exists()

    third = _run(services, _spec(inputs, tmp_path / "v3", alias))
    assert third.status is JobStatus.SUCCEEDED, third.error
    assert third.result and third.result["promotion"]["previous_target"] == stored["target"]
    now = json.loads(alias.read_text())
    assert now["version"] == 2 and now["target"]["job_id"] == third.id
    assert [state["target"] for state in now["history"]] == [stored["target"]]

    not_an_alias = tmp_path / "models" / "notes.json"
    not_an_alias.write_text('{"these": "are notes"}')
    refused = _run(services, _spec(inputs, tmp_path / "v4", not_an_alias))
    assert refused.status is JobStatus.FAILED and refused.error
    assert refused.error["code"] == "storage"
    assert "promote.alias_uri" in refused.error["message"]
    assert "is not an alias object" in refused.error["message"]
    assert not_an_alias.read_text() == '{"these": "are notes"}'
    assert not (tmp_path / "v4" / "manifest.json").exists(), "a failed job publishes nothing"
