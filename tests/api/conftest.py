"""An API app on a local job store, driven through Flask's test client."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Config
from tests.helpers.auth import tenant_prefixes, write_auth_file


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The real app factory, with job state in a temporary directory."""
    return _app(tmp_path, allow_local_storage=False)


@pytest.fixture
def local_app(tmp_path: Path) -> Flask:
    """The app with ``file://`` URIs allowed in specs (the embedded default's setting)."""
    return _app(tmp_path, allow_local_storage=True)


def _app(tmp_path: Path, allow_local_storage: bool) -> Flask:
    config = Config(
        state_uri=f"file://{tmp_path / 'state'}",
        work_dir=tmp_path / "work",
        allow_local_storage=allow_local_storage,
    )
    return create_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    """Two tenants, team-a and team-b, each with its own prefixes and one token."""
    return write_auth_file(
        tmp_path / "auth.json",
        {"team-a": tenant_prefixes("team-a"), "team-b": tenant_prefixes("team-b")},
    )


@pytest.fixture
def auth_app(tmp_path: Path, tokens: dict[str, str]) -> Flask:
    """The real app with tokens configured (``tokens``' auth file)."""
    config = Config(
        state_uri=f"file://{tmp_path / 'auth-state'}",
        work_dir=tmp_path / "work",
        allow_local_storage=False,
        auth_file=tmp_path / "auth.json",
    )
    return create_app(config)


@pytest.fixture
def auth_client(auth_app: Flask) -> FlaskClient:
    """A test client of ``auth_app`` (send the tokens yourself)."""
    return auth_app.test_client()
