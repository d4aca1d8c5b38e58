"""The checks on ``base_model.options`` values; the architectures themselves are in
service.contract.architectures."""

from __future__ import annotations


def option_error(name: str, value: object) -> str | None:
    """Why ``value`` is not a valid value of option ``name``, or None when it is."""
    if name in ("include_top", "minimalistic"):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "Must be a number."
    if name == "alpha":
        return None if 0 < value <= 4 else "Must be more than 0 and at most 4."
    if name == "depth_multiplier":
        ok = isinstance(value, int) and 1 <= value <= 8
        return None if ok else "Must be an integer from 1 to 8."
    return "Unknown option."
