"""Query-string arguments."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from schemas.job import STATUSES


class JobListQuerySchema(Schema):
    """Arguments of ``GET /v1/jobs``."""

    status = fields.String(
        validate=validate.OneOf(STATUSES), metadata={"description": "Only jobs with this status."}
    )
    label = fields.String(
        validate=validate.Length(min=3, max=320),
        metadata={"description": "Only jobs with this label, as key=value."},
    )
    limit = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "Page size, 1-100. Default 20."},
    )
    cursor = fields.String(
        validate=validate.Length(max=512),
        metadata={"description": "next_cursor of the previous page."},
    )

    @validates("label")
    def _key_value(self, value: str, **kwargs: Any) -> None:
        if "=" not in value or value.startswith("="):
            raise ValidationError("Must be key=value.")
