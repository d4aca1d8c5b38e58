"""Making the OpenAPI document say exactly what the schemas accept.

- ``SchemaExtrasPlugin``: a schema class may carry ``OPENAPI_EXTRA``, a dict merged into its
  component, for rules that tie fields together (``anyOf``...), which apispec cannot derive
  from the fields one by one.
- ``install_converters``: two corrections of apispec's field conversion for OpenAPI 3.0.
  A nullable nested object comes out as ``anyOf: [{"type": "object", "nullable": true},
  {"$ref": ...}]``, whose first branch admits any object at all: it is narrowed to null
  alone (``enum: [null]``). A ``Range`` that excludes its bounds comes out as inclusive:
  ``exclusiveMinimum`` / ``exclusiveMaximum`` are added.
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin
from flask_smorest import Api
from marshmallow import validate

_ANY_OBJECT_OR_NULL = {"type": "object", "nullable": True}


class SchemaExtrasPlugin(BasePlugin):
    """Merges each schema's ``OPENAPI_EXTRA`` into its component."""

    def schema_helper(
        self, name: str, definition: dict[str, Any], **kwargs: Any
    ) -> dict[str, Any] | None:
        """The extra keys of the component ``name`` (None where its schema has none)."""
        schema = kwargs.get("schema")
        extra = getattr(schema, "OPENAPI_EXTRA", None)
        return dict(extra) if extra else None


def _null_only(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An attribute function run after apispec's own: the "or null" branch admits only null."""
    branches = ret.get("anyOf")
    if not branches or _ANY_OBJECT_OR_NULL not in branches:
        return {}
    return {
        "anyOf": [
            {**branch, "enum": [None]} if branch == _ANY_OBJECT_OR_NULL else branch
            for branch in branches
        ]
    }


def _exclusive_bounds(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """``exclusiveMinimum`` / ``exclusiveMaximum`` for a Range that excludes its bounds."""
    bounds: dict[str, Any] = {}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            if validator.min is not None and not validator.min_inclusive:
                bounds["exclusiveMinimum"] = True
            if validator.max is not None and not validator.max_inclusive:
                bounds["exclusiveMaximum"] = True
    return bounds


def install_converters(api: Api) -> None:
    """Register both corrections with ``api``'s marshmallow converter (before any blueprint)."""
    api.ma_plugin.converter.add_attribute_function(_null_only)
    api.ma_plugin.converter.add_attribute_function(_exclusive_bounds)
