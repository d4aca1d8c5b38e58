"""Custom fields for values that take more than one form (a string or an object)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields

from service.contract.plan import FREEZE_KEYS, FREEZE_WORDS
from service.contract.uri import InvalidURI, parse_uri, unsafe_key_reason

MAX_URI_LENGTH = 1024
_SAFE = r"[^?#\x00-\x1f\x7f\\]"  # no query, fragment, control character or backslash
_NO_DOT_SEGMENT = r"(?!.*/\.\.?(/|$))"
#: The characters S3 and S3-compatible servers allow in bucket names.
_BUCKET = r"[A-Za-z0-9._\-]{1,255}"
_BUCKET_NAME = re.compile(rf"^{_BUCKET}$")
#: What the OpenAPI document promises of a storage URI: s3:// or file://, no '.' or '..'
#: segment, no query, control character or backslash.
URI_PATTERN = rf"^{_NO_DOT_SEGMENT}(s3://{_BUCKET}(/{_SAFE}*)?|file://(localhost)?/{_SAFE}*)$"
#: The same, for a URI that must name a folder (end with '/').
PREFIX_PATTERN = (
    rf"^{_NO_DOT_SEGMENT}(s3://{_BUCKET}(/({_SAFE}*/)?)?|file://(localhost)?/({_SAFE}*/)?)$"
)
#: The same, for a URI that must name one object (a key not ending with '/').
_LAST = r"[^/?#\x00-\x1f\x7f\\]"
OBJECT_PATTERN = (
    rf"^{_NO_DOT_SEGMENT}(s3://{_BUCKET}/{_SAFE}*{_LAST}|file://(localhost)?/{_SAFE}*{_LAST})$"
)
Access = Literal["read", "write"]
MAX_LAYER_INDEX = 100_000
MAX_LAYER_NAME = 256


def _pattern_for(prefix: bool | None) -> str:
    if prefix is None:
        return URI_PATTERN
    return PREFIX_PATTERN if prefix else OBJECT_PATTERN


class StorageURIField(fields.String):
    """A storage URI: ``s3://bucket/key`` or ``file:///path`` (other schemes are refused).

    Args:
        prefix: True where the URI must name a folder (end with '/'), False where it must
            name one object (not end with '/'), None where either will do.
        access: What the job does there: ``read`` (inputs) or ``write`` (outputs). Where
            tokens are configured, the caller's tenant must hold a prefix of that kind
            covering the URI (service/api/access.py walks the schema for these fields).
    """

    def __init__(
        self, *, prefix: bool | None = None, access: Access = "read", **kwargs: Any
    ) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {
            "description": "s3://bucket/key, or file:///path where the service has local storage.",
            "maxLength": MAX_URI_LENGTH,
            "pattern": _pattern_for(prefix),
            "x-storage-access": access,
            **kwargs["metadata"],
        }
        super().__init__(**kwargs)
        self.prefix = prefix
        self.access: Access = access

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > MAX_URI_LENGTH:
            raise ValidationError(f"Longer than {MAX_URI_LENGTH} characters.")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
            # urlsplit would silently drop tabs and newlines: refuse rather than reinterpret.
            raise ValidationError("Not a usable storage location: it contains a control character.")
        try:
            parsed = parse_uri(text)
        except InvalidURI as exc:
            raise ValidationError(str(exc)) from exc
        reason = unsafe_key_reason(parsed.key)
        if parsed.scheme == "s3" and not _BUCKET_NAME.match(parsed.bucket):
            reason = "a bucket name has only letters, digits, '.', '_' and '-'"
        if parsed.bucket in (".", ".."):
            reason = "'.' and '..' are not bucket names"
        if reason:
            raise ValidationError(f"Not a usable storage location: {reason}.")
        if self.prefix is True and not parsed.is_prefix:
            raise ValidationError("Must be a prefix ending with '/'.")
        if self.prefix is False and parsed.is_prefix:
            raise ValidationError("Must name one object, not a prefix ending with '/'.")
        return text


class FreezeField(fields.Field[Any]):
    """What to freeze: ``"none"``, ``"base"``, or one of ``first_n``, ``until``, ``pattern``."""

    WORDS = FREEZE_WORDS
    KEYS = FREEZE_KEYS
    #: Each form of a freeze rule, a component of the OpenAPI document (the field's ``oneOf``
    #: names them), so that a generated client has one type per form.
    OPENAPI_COMPONENTS: ClassVar[dict[str, dict[str, Any]]] = {
        "FreezeWord": {
            "type": "string",
            "enum": list(WORDS),
            "description": '"none": all layers train; "base": all but the new head.',
        },
        "FreezeFirstN": {
            "type": "object",
            "description": "Freeze the first N layers of the base, in its layer order (the "
            "input layer counts: first_n 2 freezes the input layer and the first layer after it; "
            "a nested model's layers count in its place).",
            "properties": {
                "first_n": {"type": "integer", "minimum": 0, "maximum": MAX_LAYER_INDEX}
            },
            "required": ["first_n"],
            "additionalProperties": False,
        },
        "FreezeUntil": {
            "type": "object",
            "description": "Freeze that layer and all before it.",
            "properties": {
                "until": {"type": "string", "minLength": 1, "maxLength": MAX_LAYER_NAME}
            },
            "required": ["until"],
            "additionalProperties": False,
        },
        "FreezePattern": {
            "type": "object",
            "description": "Freeze the layers whose name matches the regular expression.",
            "properties": {
                "pattern": {"type": "string", "minLength": 1, "maxLength": MAX_LAYER_NAME}
            },
            "required": ["pattern"],
            "additionalProperties": False,
        },
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {
            "description": (
                '"none" (all layers train), "base" (all but the new head), {"first_n": N} '
                "(the first N layers of the base in order, its input layer counted), "
                '{"until": "layer_name"} (that layer and all '
                'before it), or {"pattern": "regex"} (layers whose name matches).'
            ),
            "oneOf": list(self.OPENAPI_COMPONENTS),
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
            if isinstance(arg, bool) or not isinstance(arg, int) or not 0 <= arg <= MAX_LAYER_INDEX:
                raise ValidationError({"first_n": ["Must be an integer from 0 to 100000."]})
        elif key == "until":
            if not isinstance(arg, str) or not 0 < len(arg) <= MAX_LAYER_NAME:
                raise ValidationError({"until": ["Must be a layer name (1-256 characters)."]})
        elif key == "pattern":
            if not isinstance(arg, str) or not 0 < len(arg) <= MAX_LAYER_NAME:
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
            "oneOf": [
                {"type": "integer", "minimum": -MAX_LAYER_INDEX, "maximum": MAX_LAYER_INDEX},
                {"type": "string", "minLength": 1, "maxLength": MAX_LAYER_NAME},
            ],
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
            if not -MAX_LAYER_INDEX <= value <= MAX_LAYER_INDEX:
                raise ValidationError("Layer index out of range.")
            return value
        if isinstance(value, str) and 0 < len(value) <= MAX_LAYER_NAME:
            return value
        raise ValidationError("Must be a layer index (integer) or a layer name (string).")


#: What the document says of a webhook URL: http(s), a host, no credentials, no fragment.
WEBHOOK_URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~/?=&%-]*)?$"


class WebhookURLField(fields.String):
    """An ``http://`` or ``https://`` URL with a host and no credentials in it."""

    MAX_LENGTH = 2048

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {
            "format": "uri",
            "maxLength": self.MAX_LENGTH,
            "pattern": WEBHOOK_URL_PATTERN,
            **kwargs["metadata"],
        }
        super().__init__(**kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > self.MAX_LENGTH:
            raise ValidationError(f"Longer than {self.MAX_LENGTH} characters.")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ValidationError(f"Not a valid URL: {exc}.") from exc
        if parts.scheme not in ("http", "https"):
            raise ValidationError("Must be an http:// or https:// URL.")
        if not parts.hostname:
            raise ValidationError("The URL has no host.")
        if parts.username is not None or parts.password is not None:
            raise ValidationError(
                "Credentials in the URL are not allowed; receivers check the signature instead."
            )
        if port == 0:
            raise ValidationError("Port 0 is not a valid port.")
        if parts.fragment:
            raise ValidationError("A webhook URL has no #fragment.")
        return text


class ClassWeightField(fields.Field[Any]):
    """Class weights: ``"balanced"``, or an object of class name to a positive weight."""

    MAX_CLASSES = 100_000
    MAX_WEIGHT = 1_000_000
    #: Both forms, components of the OpenAPI document (see ``FreezeField``).
    OPENAPI_COMPONENTS: ClassVar[dict[str, dict[str, Any]]] = {
        "ClassWeightBalanced": {
            "type": "string",
            "enum": ["balanced"],
            "description": "Weights inverse to the class frequency.",
        },
        "ClassWeights": {
            "type": "object",
            "description": "Class name to weight; classes not named weigh 1.",
            "minProperties": 1,
            "maxProperties": MAX_CLASSES,
            "additionalProperties": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": MAX_WEIGHT,
            },
        },
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"oneOf": list(self.OPENAPI_COMPONENTS), **kwargs["metadata"]}
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
        if len(value) > self.MAX_CLASSES:
            raise ValidationError("Too many classes.")
        weights: dict[str, float] = {}
        for name, weight in value.items():
            if not isinstance(name, str) or not 0 < len(name) <= 256:
                raise ValidationError("Class names must be strings of 1-256 characters.")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not (0 < weight <= self.MAX_WEIGHT)
            ):
                raise ValidationError(
                    {name: [f"Must be a number above 0 (at most {self.MAX_WEIGHT})."]}
                )
            weights[name] = float(weight)
        return weights
