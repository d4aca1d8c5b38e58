"""Bearer-token authentication of every ``/v1`` call, and the caller's principal.

``/healthz``, ``/readyz``, ``/openapi.json`` (and anything else outside ``/v1``) stay open:
probes and the API document carry no tenant data.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, g, request

from service.api.errors import error_response
from service.security import Principal, TokenTable

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/v1"
REALM = "finetune"
_EXTENSION = "finetune_auth"
#: The OpenAPI security scheme every /v1 operation names.
SECURITY_SCHEME = "bearerAuth"


def install(app: Flask, tokens: TokenTable | None) -> None:
    """Authenticate every ``/v1`` request with ``tokens``; None runs open (tenant default)."""
    app.extensions[_EXTENSION] = tokens
    app.before_request(_authenticate)


def is_protected(path: str) -> bool:
    """Whether ``path`` needs a token (where tokens are configured)."""
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


def current_principal() -> Principal:
    """The caller of the request being served.

    Raises:
        RuntimeError: Called outside a ``/v1`` request (a programming error).
    """
    principal = g.get("principal")
    if not isinstance(principal, Principal):
        raise RuntimeError("current_principal() outside an authenticated /v1 request")
    return principal


def _authenticate() -> Response | None:
    if not is_protected(request.path):
        return None
    tokens: TokenTable | None = current_app.extensions[_EXTENSION]
    if tokens is None:
        g.principal = Principal.open_mode()
        return None
    header = request.headers.get("Authorization", "")
    if not header:
        return _unauthorized(
            "This API needs a token: send the header Authorization with the value "
            "'Bearer <your token>'.",
            error=None,
        )
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return _unauthorized(
            "The Authorization header must hold 'Bearer <your token>'.",
            error="invalid_request",
        )
    principal = tokens.authenticate(credential)
    if principal is None:
        log.info(
            "refused %s %s from %s: unknown bearer token",
            request.method,
            request.path,
            request.remote_addr,
        )
        return _unauthorized(
            "The token is not valid: check it, or ask an operator for a new one.",
            error="invalid_token",
        )
    g.principal = principal
    return None


def _unauthorized(message: str, error: str | None) -> Response:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return error_response(401, message, headers={"WWW-Authenticate": challenge})
