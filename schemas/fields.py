"""Custom fields for values that take more than one form (a string or an object)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields

from service.storage.uri import InvalidURI, parse_uri

MAX_URI_LENGTH = 1024


class StorageURIField(fields.String):
    """A storage URI: ``s3://bucket/key`` or ``file:///path`` (other schemes are refused)."""

    def __init__(self, *, prefix: bool | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {
            "description": "s3://bucket/key, or file:///path where the service has local storage.",
            "maxLength": MAX_URI_LENGTH,
            **kwargs["metadata"],
        }
        super().__init__(**kwargs)
        self.prefix = prefix

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > MAX_URI_LENGTH:
            raise ValidationError(f"Longer than {MAX_URI_LENGTH} characters.")
        try:
            parsed = parse_uri(text)
        except InvalidURI as exc:
            raise ValidationError(str(exc)) from exc
        if self.prefix is True and not parsed.is_prefix:
            raise ValidationError("Must be a prefix ending with '/'.")
        return text


class FreezeField(fields.Field[Any]):
    """What to freeze: ``"none"``, ``"base"``, or one of ``first_n``, ``until``, ``pattern``."""

    WORDS = ("none", "base")
    KEYS = ("first_n", "until", "pattern")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {
            "description": (
                '"none" (all layers train), "base" (all but the new head), {"first_n": N} '
                '(the first N layers of the base), {"until": "layer_name"} (that layer and all '
                'before it), or {"pattern": "regex"} (layers whose name matches).'
            ),
            "oneOf": [
                {"type": "string", "enum": list(self.WORDS)},
                {
                    "type": "object",
                    "properties": {"first_n": {"type": "integer", "minimum": 0}},
                    "required": ["first_n"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"until": {"type": "string"}},
                    "required": ["until"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"pattern": {"type": "string"}},
                    "required": ["pattern"],
                    "additionalProperties": False,
                },
            ],
            **kwargs["metadata"],
        }
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str | dict[str, Any]:
        if isinstance(value, str):
            if value not in self.WORDS:
                raise ValidationError(
                    f'Must be "none", "base" or an object with one of {", ".join(self.KEYS)}.'
                )
            return value
        if not isinstance(value, dict) or len(value) != 1:
            raise ValidationError(
                f'Must be "none", "base" or an object with exactly one of {", ".join(self.KEYS)}.'
            )
        ((key, arg),) = value.items()
        if key == "first_n":
            if isinstance(arg, bool) or not isinstance(arg, int) or not 0 <= arg <= 100_000:
                raise ValidationError({"first_n": ["Must be an integer from 0 to 100000."]})
        elif key == "until":
            if not isinstance(arg, str) or not 0 < len(arg) <= 256:
                raise ValidationError({"until": ["Must be a layer name (1-256 characters)."]})
        elif key == "pattern":
            if not isinstance(arg, str) or not 0 < len(arg) <= 256:
                raise ValidationError(
                    {"pattern": ["Must be a regular expression (1-256 characters)."]}
                )
            try:
                re.compile(arg)
            except re.error as exc:
                raise ValidationError(
                    {"pattern": [f"Not a valid regular expression: {exc}."]}
                ) from exc
        else:
            raise ValidationError({key: ["Unknown field."]})
        return {key: arg}


class LayerRefField(fields.Field[Any]):
    """A layer: an index (negative counts from the end) or a layer name."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {
            "oneOf": [{"type": "integer"}, {"type": "string", "minLength": 1, "maxLength": 256}],
            **kwargs["metadata"],
        }
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int | str:
        if isinstance(value, bool):
            raise ValidationError("Must be a layer index (integer) or a layer name (string).")
        if isinstance(value, int):
            if not -100_000 <= value <= 100_000:
                raise ValidationError("Layer index out of range.")
            return value
        if isinstance(value, str) and 0 < len(value) <= 256:
            return value
        raise ValidationError("Must be a layer index (integer) or a layer name (string).")


class ClassWeightField(fields.Field[Any]):
    """Class weights: ``"balanced"``, or an object of class name to a positive weight."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {
            "oneOf": [
                {"type": "string", "enum": ["balanced"]},
                {
                    "type": "object",
                    "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
                },
            ],
            **kwargs["metadata"],
        }
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str | dict[str, float]:
        if value == "balanced":
            return "balanced"
        if not isinstance(value, dict) or not value:
            raise ValidationError(
                'Must be "balanced" or an object of class name to weight, e.g. {"cat": 2.0}.'
            )
        if len(value) > 100_000:
            raise ValidationError("Too many classes.")
        weights: dict[str, float] = {}
        for name, weight in value.items():
            if not isinstance(name, str) or not 0 < len(name) <= 256:
                raise ValidationError("Class names must be strings of 1-256 characters.")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
                0 < weight <= 1e6
            ):
                raise ValidationError({name: ["Must be a number above 0 (at most 1000000)."]})
            weights[name] = float(weight)
        return weights
