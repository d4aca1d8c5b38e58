"""Making the OpenAPI document say exactly what the schemas accept.

- ``SchemaExtrasPlugin``: a schema class may carry ``OPENAPI_EXTRA``, a dict merged into its
  component, for rules that tie fields together, which apispec cannot derive from the fields
  one by one. They are stated with ``not`` (the combinations refused): client generators
  ignore it, where an ``anyOf`` beside ``properties`` makes them read the object as a union
  of its branches and drop the fields outside them.
- ``install_converters``: corrections of apispec's field conversion for OpenAPI 3.0.
  A nullable nested object comes out as ``anyOf: [{"type": "object", "nullable": true},
  {"$ref": ...}]``, whose first branch admits any object at all: it is narrowed to null
  alone (``enum: [null]``). A ``Range`` that excludes its bounds comes out as inclusive:
  ``exclusiveMinimum`` / ``exclusiveMaximum`` are added. And every value with a name of its
  own becomes a component (see ``_value_components``).

Why components: client generators (openapi-python-client) name an inline object or enum
``<Model><Property>`` and a member of a union ``<Model><Property>Type<N>``; an inline object can
collide with a component of that name, and the same enum or form used in two places becomes
two unrelated types. A ``$ref`` gives every client one type per value, under the name chosen here.
"""

from __future__ import annotations

import copy
from typing import Any

from apispec import APISpec, BasePlugin
from flask_smorest import Api
from marshmallow import validate

_ANY_OBJECT_OR_NULL = {"type": "object", "nullable": True}
#: The "or null" branch of a nullable value that is a component: null and nothing else.
NULL_ONLY = {**_ANY_OBJECT_OR_NULL, "enum": [None]}
#: The key of a field's metadata that names the component its enum becomes (apispec leaves
#: keys it does not know out of the document).
ENUM_COMPONENT = "component"


class SchemaExtrasPlugin(BasePlugin):
    """Merges each schema's ``OPENAPI_EXTRA`` into its component."""

    def schema_helper(
        self, name: str, definition: dict[str, Any], **kwargs: Any
    ) -> dict[str, Any] | None:
        """The extra keys of the component ``name`` (None where its schema has none)."""
        schema = kwargs.get("schema")
        extra = getattr(schema, "OPENAPI_EXTRA", None)
        return copy.deepcopy(extra) if extra else None


def _null_only(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An attribute function run after apispec's own: the "or null" branch admits only null."""
    branches = ret.get("anyOf")
    if not branches or _ANY_OBJECT_OR_NULL not in branches:
        return {}
    return {
        "anyOf": [
            dict(NULL_ONLY) if branch == _ANY_OBJECT_OR_NULL else branch for branch in branches
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


def _value_components(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An attribute function: the field's named values become components it refers to.

    - A field class may carry ``OPENAPI_COMPONENTS``: the forms its metadata's ``oneOf`` names
      (as component names, which apispec turns into ``$ref``); they are registered here.
    - A field whose metadata has ``"component": "Name"`` has its enum (type and values) moved
      into that component; the field keeps its description and default, and refers to it with
      ``allOf: [$ref]``, or ``anyOf: [$ref, null]`` where it is nullable (an enum listing
      ``null`` as a value would give the generator three types for one).

    Raises:
        ValueError: A component name stands for two different values.
    """
    for name, definition in getattr(field, "OPENAPI_COMPONENTS", {}).items():
        _register(self.spec, name, definition)
    name = field.metadata.get(ENUM_COMPONENT)
    if name is None:
        return {}
    values = [value for value in ret.pop("enum") if value is not None]
    _register(self.spec, name, {"type": ret.pop("type"), "enum": values})
    ref = self.spec.components.get_ref("schema", name)
    if ret.pop("nullable", False):
        return {"anyOf": [ref, dict(NULL_ONLY)]}
    return {"allOf": [ref]}


def _register(spec: APISpec, name: str, definition: dict[str, Any]) -> None:
    """Add the component ``name`` to ``spec`` unless it is there already, with this value.

    Raises:
        ValueError: ``name`` is there with another value.
    """
    known = spec.components.schemas.get(name)
    if known is None:
        spec.components.schema(name, definition)
    elif known != definition:
        raise ValueError(f"The component {name} stands for two values: {known} and {definition}.")


def install_converters(api: Api) -> None:
    """Register the corrections with ``api``'s marshmallow converter (before any blueprint)."""
    api.ma_plugin.converter.add_attribute_function(_null_only)
    api.ma_plugin.converter.add_attribute_function(_exclusive_bounds)
    api.ma_plugin.converter.add_attribute_function(_value_components)
