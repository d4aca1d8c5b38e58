"""Job specs for tests."""

from __future__ import annotations

from typing import Any

from schemas import JobSpecSchema


def raw_spec(**overrides: Any) -> dict[str, Any]:
    """A minimal valid spec body, as a client would POST it."""
    spec: dict[str, Any] = {
        "base_model": {"uri": "s3://models/base/model.keras"},
        "dataset": {"train": "s3://data/digits/train/"},
        "output": {"uri": "s3://models/out/"},
    }
    spec.update(overrides)
    return spec


def loaded_spec(**overrides: Any) -> dict[str, Any]:
    """raw_spec validated, defaults filled in (what the job store keeps)."""
    loaded: dict[str, Any] = JobSpecSchema().load(raw_spec(**overrides))
    return loaded
