"""A job queued by an earlier release (its spec lacks fields added since) still runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import JobSpecSchema
from service.jobs import JobRecord, JobStatus
from service.worker import Worker
from service.worker.spec_upgrade import SpecNoLongerValid, spec_for_this_release
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.services import local_services
from tests.helpers.specs import raw_spec

# Fields this release added; a record written before them has none.
ADDED_SINCE = (("training", "feature_cache"), ("resources",), ("output", "overwrite"))


def _as_an_earlier_release_stored_it(spec: dict) -> dict:
    old = JobSpecSchema().load(spec)
    for path in ADDED_SINCE:
        section = old
        for key in path[:-1]:
            section = section[key]
        section.pop(path[-1], None)
    return old


def test_a_current_spec_is_read_as_it_is_and_an_old_one_gets_the_new_defaults() -> None:
    current = JobSpecSchema().load(raw_spec())
    assert spec_for_this_release(current) is None

    upgraded = spec_for_this_release(_as_an_earlier_release_stored_it(raw_spec()))

    assert upgraded == current


def test_a_spec_this_release_refuses_names_its_fields() -> None:
    old = _as_an_earlier_release_stored_it(raw_spec())
    old["training"]["epochs"] = 0

    with pytest.raises(SpecNoLongerValid, match="epochs"):
        spec_for_this_release(old)


@pytest.mark.slow
def test_a_worker_runs_a_job_an_earlier_release_queued(tmp_path: Path) -> None:
    services = local_services(tmp_path, heartbeat_seconds=0.5)
    pretrain_tiny_cnn(tmp_path / "model.keras", epochs=1, per_class=10)
    write_image_folder(tmp_path / "train", ["a", "b"], per_class=10, digits=[0, 1])
    spec = raw_spec(
        base_model={"uri": f"file://{tmp_path / 'model.keras'}"},
        dataset={"train": f"file://{tmp_path / 'train'}/", "preprocessing": "rescale"},
        head={"cut_at": "gap"},
        training={"epochs": 1},
        output={"uri": f"file://{tmp_path / 'out'}/"},
    )
    created = services.jobs.create(JobSpecSchema().load(spec))

    def as_before(record: JobRecord) -> None:
        record.spec = _as_an_earlier_release_stored_it(spec)

    services.jobs.update(created.id, as_before)
    assert "resources" not in services.jobs.get(created.id).spec

    assert Worker(services).run_once()

    record = services.jobs.get(created.id)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.spec == JobSpecSchema().load(spec)
