"""Request bodies that would break the JSON parser rather than fail validation."""

from __future__ import annotations

import json

from flask import Flask, request
from flask_smorest import abort


def install(app: Flask) -> None:
    """Check every JSON body before the views parse it."""
    app.before_request(_refuse_unparseable_nesting)


def _refuse_unparseable_nesting() -> None:
    """400 for JSON nested deeper than Python's parser can follow.

    ``[[[[...]]]]`` a few thousand levels deep fits easily in the size limit, and the
    standard parser answers it with RecursionError, not ValueError: webargs would let that
    through as a 500. Reading the body here also applies the size limit (413) early.
    """
    if request.method not in ("POST", "PUT", "PATCH") or not request.is_json:
        return
    data = request.get_data(cache=True)
    if not data:
        return
    try:
        json.loads(data)
    except RecursionError:
        abort(400, message="The request body is JSON nested too deeply to be a job spec.")
    except ValueError:
        return  # not JSON at all: the views' parser answers that with its own 400
