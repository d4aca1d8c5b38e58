"""The one error body every error answer carries."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorSchema(Schema):
    """``{"code", "status", "message", "errors"}``; never a traceback."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    status = fields.String(required=True, metadata={"description": "The HTTP status phrase."})
    message = fields.String(metadata={"description": "What went wrong and what to change."})
    errors = fields.Dict(metadata={"description": "Per-field messages, by location then field."})
