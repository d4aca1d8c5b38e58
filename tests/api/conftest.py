"""An API app on a local job store, driven through Flask's test client."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Config


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The real app factory, with job state in a temporary directory."""
    config = Config(
        state_uri=f"file://{tmp_path / 'state'}",
        work_dir=tmp_path / "work",
        allow_local_storage=False,
    )
    return create_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()
