"""The API's app factory; gunicorn serves ``service.app:create_app()``.

Nothing here imports TensorFlow: an API process starts in well under a second and stays small.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask_smorest import Api

from schemas import ErrorSchema
from service import __version__
from service.api import errors, health, jobs
from service.config import Config
from service.context import Services, build_services
from service.dryrun import DryRunner
from service.logs import configure_logging

log = logging.getLogger(__name__)


class _Api(Api):  # type: ignore[misc]
    """flask-smorest's Api, documenting errors with the service's own error schema."""

    ERROR_SCHEMA = ErrorSchema


def create_app(
    config: Config | None = None,
    services: Services | None = None,
    test_config: dict[str, Any] | None = None,
) -> Flask:
    """Build the Flask app: configuration, storage and job store, blueprints, error handlers."""
    configure_logging()
    config = config or (services.config if services else Config.from_env())
    services = services or build_services(config)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="Keras fine-tuning service",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=config.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.config.from_prefixed_env("FINETUNE_FLASK")
    if test_config:
        app.config.update(test_config)
    app.extensions["finetune"] = services
    app.extensions["finetune_dry_run"] = DryRunner(config, services.storage)
    api = _Api(app, spec_kwargs={"info": {"description": _DESCRIPTION}})
    api.register_blueprint(jobs.blp)
    app.register_blueprint(health.blp)
    errors.register(app)
    log.info("API ready: state in %s", config.state_uri)
    return app


_DESCRIPTION = (
    "Fine-tunes pretrained Keras models on image data in S3-compatible storage. POST a job spec "
    "to /v1/jobs, poll GET /v1/jobs/{id} until its status is final. Every error is JSON: "
    '{"code", "status", "message", "errors"}.'
)
