"""A job spec read strictly: numbers and booleans are JSON's, an unknown field names known ones.

marshmallow's ``Integer`` takes ``"8"`` and ``8.0`` and its ``Float`` takes ``"0.1"``: a client
sending a string where a number is due (a templating slip, a quoted YAML value) would have it
silently converted. Here both are a 422 naming the field. And where marshmallow answers a
misspelt field with a bare "Unknown field.", the message names the closest known fields.
"""

from __future__ import annotations

import difflib
from typing import Any

from marshmallow import Schema, ValidationError, fields

#: How many close field names an "Unknown field." message suggests, and how close they must be.
_SUGGESTIONS = 3
_CUTOFF = 0.6


class StrictInteger(fields.Integer):
    """An integer written as a JSON integer: ``"8"``, ``8.0`` and ``true`` are refused."""

    default_error_messages = {  # noqa: RUF012 (marshmallow merges these class dicts)
        "invalid": "Not a valid integer: write a JSON integer such as 8, not a string "
        "or a number with a fraction."
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)


class StrictFloat(fields.Float):
    """A number written as a JSON number (``8`` or ``0.001``): ``"0.001"`` is refused."""

    default_error_messages = {  # noqa: RUF012 (marshmallow merges these class dicts)
        "invalid": "Not a valid number: write a JSON number such as 0.001, not a string."
    }

    def _validated(self, value: Any) -> float:
        if isinstance(value, str):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """A JSON ``true`` or ``false``: ``"yes"``, ``"true"``, ``1`` and ``0`` are refused."""

    default_error_messages = {  # noqa: RUF012 (marshmallow merges these class dicts)
        "invalid": "Not a valid boolean: write true or false (JSON), not a string or a number."
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictSchema(Schema):
    """Refuses unknown fields (marshmallow's default) and says which known field was meant."""

    def handle_error(self, error: ValidationError, data: Any, *, many: bool, **kwargs: Any) -> None:
        """Add the closest known field names to each "Unknown field." message, in place.

        Nested schemas handle their own level first; the parent sees their messages as they
        are, so each level rewrites only its own unknown keys.
        """
        if many or not isinstance(error.messages, dict):
            return
        unknown = self.error_messages["unknown"]
        known = [field.data_key or name for name, field in self.fields.items()]
        for key, messages in error.messages.items():
            if messages == [unknown] and key not in known:
                error.messages[key] = [f"{unknown} {_suggestion(str(key), known)}"]


def _suggestion(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=_SUGGESTIONS, cutoff=_CUTOFF)
    if close:
        return "Did you mean " + " or ".join(repr(option) for option in close) + "?"
    return "Known fields: " + ", ".join(sorted(known)) + "."
