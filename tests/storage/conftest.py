"""Fixtures for the storage tests: one ``store`` fixture, run against both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.storage import LocalObjectStore, ObjectStore, S3ObjectStore


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """An empty store: a fresh bucket on the moto server, or a fresh local directory."""
    if request.param == "s3":
        client = request.getfixturevalue("s3_client")
        return S3ObjectStore(client, request.getfixturevalue("bucket"))
    return LocalObjectStore(tmp_path / "store")
