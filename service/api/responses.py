"""The error answers each view documents in the OpenAPI document, said once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask_smorest import Blueprint

from schemas import ErrorSchema, examples

View = TypeVar("View", bound=Callable[..., Any])

_STRING = {"type": "string"}
ERRORS: dict[int, dict[str, Any]] = {
    400: {"description": "The body is not JSON, or not sent as application/json."},
    401: {
        "description": "No token, or not a valid one (only where tokens are configured).",
        "headers": {
            "WWW-Authenticate": {
                "description": 'Bearer realm="finetune", with error="invalid_token" for a '
                "token that is not valid.",
                "required": True,
                "schema": _STRING,
            }
        },
    },
    403: {
        "description": "A storage URI lies outside the prefixes the caller's tenant may read "
        "(inputs) or write (output); errors names each such field."
    },
    404: {"description": "No such job (or it belongs to another tenant)."},
    405: {"description": "The path does not take this method."},
    409: {"description": "The job already finished."},
    413: {"description": "The body is larger than the service's limit (FINETUNE_MAX_BODY_BYTES)."},
    422: {"description": "A field is invalid; errors names it."},
    504: {"description": "The dry run did not finish in time (FINETUNE_DRY_RUN_TIMEOUT_SECONDS)."},
    503: {
        "description": "Storage is unreachable right now.",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "required": True,
                "schema": _STRING,
            }
        },
    },
}


#: Example bodies shown beside the error answers that have one.
EXAMPLES: dict[int, dict[str, Any]] = {
    400: examples.NOT_JSON_ERROR_EXAMPLE,
    404: examples.NOT_FOUND_ERROR_EXAMPLE,
    409: examples.CONFLICT_ERROR_EXAMPLE,
    422: examples.VALIDATION_ERROR_EXAMPLE,
    503: examples.UNAVAILABLE_ERROR_EXAMPLE,
}


def documents_errors(blp: Blueprint, *codes: int, **descriptions: str) -> Callable[[View], View]:
    """Document the error answers ``codes`` of a view, all with the one error schema.

    ``descriptions`` overrides a description by code, as ``d404="No such job."``.
    """

    def decorate(view: View) -> View:
        for code in codes:
            entry = ERRORS[code]
            description = descriptions.get(f"d{code}", entry["description"])
            view = blp.alt_response(
                code,
                schema=ErrorSchema,
                description=description,
                headers=entry.get("headers"),
                example=EXAMPLES.get(code),
            )(view)
        return view

    return decorate
