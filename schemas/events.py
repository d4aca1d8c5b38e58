"""Job events."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.strict import StrictSchema

#: Sequence numbers are stored with 10 digits.
MAX_SEQ = 9_999_999_999


class EventSchema(Schema):
    """One thing that happened to a job."""

    seq = fields.Integer(required=True, metadata={"description": "Increases by one per event."})
    time = fields.String(required=True, metadata={"description": "RFC 3339, UTC."})
    type = fields.String(
        required=True,
        metadata={"description": "e.g. created, claimed, phase, epoch, succeeded, failed."},
    )
    message = fields.String(required=True)
    data = fields.Dict(load_default=dict)


class EventListSchema(Schema):
    """Answer of ``GET /v1/jobs/{id}/events``."""

    events = fields.List(fields.Nested(EventSchema), required=True)


class EventQuerySchema(StrictSchema):
    """Arguments of ``GET /v1/jobs/{id}/events``."""

    after = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_SEQ),
        metadata={"description": "Only events with a larger seq. Default 0."},
    )
