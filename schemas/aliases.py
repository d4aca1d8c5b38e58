"""Aliases as clients see them (``/v1/aliases``) and the arguments that name one."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.fields import StorageURIField
from schemas.strict import StrictInteger, StrictSchema


class AliasTargetSchema(Schema):
    """The model an alias points at."""

    job_id = fields.String(required=True, metadata={"description": "The job that published it."})
    keras_uri = fields.String(required=True)
    saved_model_uri = fields.String(required=True)
    manifest_uri = fields.String(required=True)


class AliasChangeSchema(Schema):
    """What made a state current."""

    action = fields.String(required=True, metadata={"enum": ["promote", "rollback"]})
    job_id = fields.String(metadata={"description": "promote: the job that promoted."})
    restored_version = fields.Integer(
        metadata={"description": "rollback: the earlier state whose target came back."}
    )


class AliasStateSchema(Schema):
    """One state of an alias."""

    target = fields.Nested(AliasTargetSchema, required=True)
    version = fields.Integer(required=True, metadata={"description": "Counts the changes from 1."})
    updated_at = fields.String(required=True)
    change = fields.Nested(AliasChangeSchema, required=True)


class AliasSchema(AliasStateSchema):
    """An alias: its current state and the earlier ones."""

    uri = fields.String(required=True, metadata={"description": "Where the alias object is."})
    history = fields.List(
        fields.Nested(AliasStateSchema),
        required=True,
        metadata={"description": "Earlier states, oldest first (the newest 100)."},
    )


class AliasQuerySchema(StrictSchema):
    """Arguments of ``GET /v1/aliases``."""

    uri = StorageURIField(
        prefix=False,
        access="read",
        required=True,
        metadata={"description": "The alias object, as a job's promote.alias_uri names it."},
    )


class AliasRollbackSchema(StrictSchema):
    """Body of ``POST /v1/aliases/rollback``."""

    uri = StorageURIField(
        prefix=False,
        access="write",
        required=True,
        metadata={"description": "The alias object, as a job's promote.alias_uri names it."},
    )
    version = StrictInteger(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1),
        metadata={
            "description": "Default null: roll back whatever the alias is at. Given: only while "
            "the alias is still at this version (409 otherwise)."
        },
    )
