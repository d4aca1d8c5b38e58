"""The champion named by an alias is read with the aliases' own reader (service.jobs.aliases)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.contract.plan import CompareWith
from service.storage.resolver import Storage
from service.worker.champions import stage_champion
from service.worker.errors import JobFailure
from service.worker.staging import Stager


def _no_s3() -> None:
    raise AssertionError("no S3 here")


@pytest.mark.parametrize(
    ("stored", "words"),
    [
        ({"target": {"job_id": "ftj_1"}}, "version must be a whole number"),
        ({"version": 1, "target": {"job_id": "ftj_1"}}, "target must be an object with"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_an_object_that_is_not_an_alias_fails_invalid_model_naming_the_field(
    tmp_path: Path, stored: object, words: str
) -> None:
    alias = tmp_path / "production.json"
    alias.write_text(json.dumps(stored))
    stager = Stager(Storage(_no_s3, allow_local=True))  # type: ignore[arg-type]

    with pytest.raises(JobFailure) as caught:
        stage_champion(
            stager, CompareWith(model_uri=None, alias_uri=f"file://{alias}"), tmp_path / "c"
        )

    assert caught.value.code == "invalid_model"
    assert caught.value.field == "compare_with.alias_uri"
    assert "is not an alias object" in caught.value.message and words in caught.value.message
