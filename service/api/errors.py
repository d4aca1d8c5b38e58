"""One JSON error format for every error answer; tracebacks go to the log, never the client."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from service.metrics.api import count_storage_error
from service.security.redaction import redact, redact_data
from service.storage.errors import StorageError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def error_response(
    code: int,
    message: str,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """``{"code", "status", "message", "errors"}`` with the given status code.

    Secrets this process knows of (credentials, tokens) are redacted from the text.
    """
    response = jsonify(error_body(code, message, errors))
    response.status_code = code
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error form ``{"code", "status", "message", "errors"}``, secrets redacted."""
    body: dict[str, Any] = {
        "code": code,
        "status": HTTPStatus(code).phrase,
        "message": redact(message),
    }
    if errors:
        body["errors"] = redact_data(_string_keys(errors))
    return body


def _string_keys(value: Any) -> Any:
    """``value`` with every mapping key a string: marshmallow mixes list indexes (ints) and
    ``_schema`` under one field, which JSON with sorted keys cannot order."""
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_string_keys(item) for item in value]
    return value


def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    data = getattr(exc, "data", {}) or {}
    errors = data.get("messages") or data.get("errors")
    message = data.get("message")
    if not message:
        if code == 413:
            limit = current_app.config.get("MAX_CONTENT_LENGTH")
            message = (
                f"The request body is larger than this service's limit of {limit} bytes."
                if limit
                else "The request body is too large."
            )
        elif code == 422 and errors:
            message = "The request has invalid fields: see errors."
        elif code == 400 and errors:
            message = "The request body is not valid JSON."
        else:
            message = exc.description or HTTPStatus(code).phrase
    response = error_response(code, message, errors)
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    return response


def _storage_error(exc: StorageError) -> Response:
    log.warning("storage unavailable while serving a request: %s", exc)
    count_storage_error("request")
    return error_response(
        503,
        "Storage is unreachable right now; retry shortly.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("unhandled error while serving a request")
    return error_response(500, "Internal error; the service log has the details.")


def register(app: Flask) -> None:
    """Install the handlers (after flask-smorest's, replacing its HTTPException handler)."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StorageError, _storage_error)
    app.register_error_handler(Exception, _unexpected)
