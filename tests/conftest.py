"""Fixtures shared by every test suite: a real S3 server (moto) over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from service.storage.client import make_s3_client
from tests.helpers.moto_server import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

#: Variables that would point boto3 somewhere else than the test server.
_FOREIGN_AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "FINETUNE_S3_ADDRESSING_STYLE",
)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server for the whole run; tests isolate themselves with fresh buckets."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3 at the moto server through the standard environment variables."""
    for name in _FOREIGN_AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    return moto_server.env


@pytest.fixture
def s3_client(s3_env: dict[str, str]) -> S3Client:
    """A client built the way the service builds it, from the environment."""
    return make_s3_client()


@pytest.fixture
def bucket(s3_client: S3Client) -> str:
    """A new, empty bucket for this test alone."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name
