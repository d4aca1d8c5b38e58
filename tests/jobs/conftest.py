"""A job store on each backend: moto over HTTP, and a local directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.jobs import JobStore
from service.storage.local import LocalObjectStore
from service.storage.s3 import S3ObjectStore


@pytest.fixture(params=["s3", "local"])
def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """A job store on moto (over HTTP) or on a local directory."""
    if request.param == "s3":
        client = request.getfixturevalue("s3_client")
        bucket = request.getfixturevalue("bucket")
        yield JobStore(S3ObjectStore(client, bucket), "state/")
    else:
        yield JobStore(LocalObjectStore(tmp_path / "state"))
