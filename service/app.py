"""The API's app factory; gunicorn serves ``service.app:create_app()``.

Nothing here imports TensorFlow: an API process starts in well under a second and stays small.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_smorest import Api

from schemas import ErrorSchema
from service import __version__
from service.api import aliases, auth, bodies, docs, errors, health, jobs, metrics
from service.api.inputs import InputChecks
from service.api.openapi_extras import SchemaExtrasPlugin, install_converters
from service.config import Config
from service.context import Services, build_services
from service.jobs.dry_runs import DryRunStore
from service.logs import configure_logging
from service.metrics import api as api_metrics
from service.metrics.api import count_storage_error
from service.metrics.store_collector import StoreCollector
from service.security import TokenTable
from service.storage.client import API_STORAGE
from service.webhooks.notifier import JobNotifier

log = logging.getLogger(__name__)


class _Api(Api):  # type: ignore[misc]
    """flask-smorest's Api, documenting errors with the service's own error schema."""

    ERROR_SCHEMA = ErrorSchema


def create_app(
    config: Config | None = None,
    services: Services | None = None,
    test_config: dict[str, Any] | None = None,
) -> Flask:
    """Build the Flask app: configuration, tokens, storage and job store, blueprints, errors.

    Raises:
        AuthFileError: ``FINETUNE_AUTH_FILE`` is set but unusable (the message says why);
            the service refuses to start rather than run open by mistake.
    """
    config = config or (services.config if services else Config.from_env())
    configure_logging(config.log_level, config.log_format)
    tokens = load_tokens(config)
    services = services or build_services(config, patience=API_STORAGE)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="Keras fine-tuning service",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs.ASSETS_URL,
        OPENAPI_SWAGGER_UI_CONFIG=docs.SWAGGER_UI_CONFIG,
        MAX_CONTENT_LENGTH=config.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    _apply_flask_settings(app, config.flask)
    if test_config:
        app.config.update(test_config)
    app.extensions["finetune"] = services
    app.extensions["finetune_dry_runs"] = DryRunStore(services.jobs.store, services.jobs.prefix)
    app.extensions["finetune_input_checks"] = InputChecks(services.storage)
    app.extensions["finetune_notifier"] = JobNotifier(services.jobs, config)
    app.extensions["finetune_store_collector"] = StoreCollector(
        services.jobs,
        cache_seconds=config.metrics_cache_seconds,
        scan_limit=config.metrics_scan_limit,
        on_storage_error=lambda: count_storage_error("metrics"),
    )
    api_metrics.install(app)
    api = _Api(
        app,
        spec_kwargs={
            "info": {"description": _DESCRIPTION},
            # Every operation needs the token unless it says otherwise (the probes do).
            "security": [{auth.SECURITY_SCHEME: []}],
            "extra_plugins": [SchemaExtrasPlugin()],
        },
    )
    api.spec.components.security_scheme(
        auth.SECURITY_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "Where the service is configured with tokens (FINETUNE_AUTH_FILE), "
            "every /v1 call needs 'Authorization: Bearer <token>'; the token's tenant decides "
            "which jobs it sees and which storage prefixes its specs may name.",
        },
    )
    install_converters(api)
    auth.install(app, tokens)
    bodies.install(app)
    api.register_blueprint(jobs.blp)
    api.register_blueprint(aliases.blp)
    api.register_blueprint(health.blp)
    app.register_blueprint(metrics.blp)
    app.register_blueprint(docs.blp)
    errors.register(app)
    log.info("API ready: state in %s", config.state_uri)
    return app


def _apply_flask_settings(app: Flask, values: Mapping[str, Any]) -> None:
    """``FINETUNE_FLASK_<KEY>`` into ``app.config``; ``A__B`` sets key B of the dict at A."""
    for key, value in values.items():
        *parents, child = key.split("__")
        target: dict[str, Any] = app.config
        for parent in parents:
            target = target.setdefault(parent, {})
        target[child] = value


def load_tokens(config: Config) -> TokenTable | None:
    """The auth file's tokens, or None (and a warning) where none is configured.

    Raises:
        AuthFileError: The file is set but missing, malformed or holds no token.
    """
    if config.auth_file is None:
        log.warning(
            "FINETUNE_AUTH_FILE is not set: the API runs OPEN, without authentication. Every "
            "caller is tenant 'default' and may name any storage the service can reach. "
            "For local use only."
        )
        return None
    tokens = TokenTable.load(config.auth_file)
    log.info(
        "authentication on: %d token(s) for tenant(s) %s from %s",
        len(tokens),
        ", ".join(tokens.tenants),
        config.auth_file,
    )
    return tokens


_DESCRIPTION = (
    "Fine-tunes pretrained Keras models on image data in S3-compatible storage. POST a job spec "
    "to /v1/jobs, poll GET /v1/jobs/{id} until its status is final (or name a webhook in "
    "notify.webhook_url, or wait with the CLI: finetune submit spec.yaml --wait). Every error "
    'is JSON: {"code", "status", "message", "errors"}. Prometheus metrics at /metrics; this '
    "page at /docs."
)
