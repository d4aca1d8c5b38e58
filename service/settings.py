"""Settings from the environment: each one stated once, as a row of a settings table.

A settings table is a frozen dataclass whose fields are made with ``setting(...)``: the field
is the setting's name and type, and its row holds the rest (environment variable, default,
parser, meaning). ``load(Table, env)`` reads every row; an invalid value fails there, at
start-up, with a message that names the variable and the form it accepts. ``markdown_table``
renders the rows for the README, so the documentation cannot drift from the code.

This module reads no environment itself unless asked (``load`` without ``env`` reads
``os.environ``) and imports nothing of the service: every layer may use it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Table = TypeVar("Table")

_ROW = "finetune_setting"


class SettingError(ValueError):
    """An environment variable holds a value its setting does not accept."""


class Parser(Generic[T_co]):
    """Turns a variable's text into a value; ``accepted`` says what it takes, for messages.

    Args:
        accepted: The accepted form, completing "<variable> must be ...".
        convert: Returns the value, or raises ValueError for text outside the form.
    """

    def __init__(self, accepted: str, convert: Callable[[str], T_co]) -> None:
        self.accepted = accepted
        self._convert = convert

    def __call__(self, raw: str) -> T_co:
        """The value of ``raw``; ValueError where it is not of the accepted form."""
        return self._convert(raw)


@dataclass(frozen=True)
class Setting:
    """One row of a settings table.

    Attributes:
        env: The environment variable (for a prefix row: its prefix, ending in ``_``).
        parse: Reads the variable's text.
        doc: What the setting means, as the README's table says it.
        shown_default: The default as the README shows it (markdown).
        derive: Where the default depends on other settings: computes it from the values
            read so far (every earlier field), for ``load`` only.
        prefix: Whether the row collects every variable starting with ``env`` into a
            mapping of the rest of each name to its parsed value.
        documented: Whether the README lists it (False for test-only hooks).
        secret: Whether the value is a secret: never shown, never in a repr.
    """

    env: str
    parse: Parser[Any]
    doc: str
    shown_default: str
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    prefix: bool = False
    documented: bool = True
    secret: bool = False


@overload
def setting(
    env: str,
    parse: Parser[T],
    doc: str,
    *,
    default: T,
    shown: str | None = None,
    derive: Callable[[Mapping[str, Any]], T] | None = None,
    documented: bool = True,
    secret: bool = False,
) -> T: ...


@overload
def setting(
    env: str,
    parse: Parser[T],
    doc: str,
    *,
    factory: Callable[[], T],
    shown: str,
    derive: Callable[[Mapping[str, Any]], T] | None = None,
    documented: bool = True,
    secret: bool = False,
) -> T: ...


def setting(
    env: str,
    parse: Parser[Any],
    doc: str,
    *,
    default: Any = MISSING,
    factory: Callable[[], Any] | None = None,
    shown: str | None = None,
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
    documented: bool = True,
    secret: bool = False,
) -> Any:
    """A dataclass field that is a setting: the field's default, and its row as metadata.

    Args:
        env: The environment variable.
        parse: Reads the variable's text (see the parsers below).
        doc: What it means, for the README.
        default: The value where the variable is unset (or empty).
        factory: Builds the default instead, where it is mutable or computed.
        shown: The default as the README shows it; where None, ``default`` formatted.
        derive: See Setting.derive.
        documented: See Setting.documented.
        secret: See Setting.secret.
    """
    shown_default = shown if shown is not None else _shown(default)
    row = Setting(env, parse, doc, shown_default, derive, env.endswith("_"), documented, secret)
    metadata = {_ROW: row}
    if factory is not None:
        return field(default_factory=factory, repr=not secret, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


def rows(table: type[Any]) -> Iterator[tuple[str, Setting]]:
    """``(field name, row)`` of every setting of ``table``, in field order."""
    for item in fields(table):
        row = item.metadata.get(_ROW)
        if row is not None:
            yield item.name, row


def row_of(table: type[Any], name: str) -> Setting:
    """The row of field ``name``; KeyError where it is not a setting."""
    for field_name, row in rows(table):
        if field_name == name:
            return row
    raise KeyError(name)


def load(table: type[Table], env: Mapping[str, str] | None = None) -> Table:
    """Build ``table`` from ``env`` (default ``os.environ``); unset variables keep defaults.

    An empty variable counts as unset.

    Raises:
        SettingError: A variable holds a value outside its accepted form.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    by_name = {item.name: item for item in fields(table)}  # type: ignore[arg-type]
    for name, row in rows(table):
        if row.prefix:
            found = _collect(row, env)
            if found:
                values[name] = found
            continue
        raw = env.get(row.env, "")
        if raw.strip():
            values[name] = _parse(row, row.env, raw)
        elif row.derive is not None:
            values[name] = row.derive({**_defaults(by_name, values), **values})
    result: Table = table(**values)
    return result


def _parse(row: Setting, variable: str, raw: str) -> Any:
    try:
        return row.parse(raw)
    except ValueError as exc:
        shown = "(hidden)" if row.secret else repr(raw)
        raise SettingError(f"{variable} must be {row.parse.accepted}. Received: {shown}") from exc


def _collect(row: Setting, env: Mapping[str, str]) -> dict[str, Any]:
    return {
        name[len(row.env) :]: _parse(row, name, env[name])
        for name in sorted(env)
        if name.startswith(row.env) and len(name) > len(row.env)
    }


def _defaults(by_name: Mapping[str, Field[Any]], values: Mapping[str, Any]) -> dict[str, Any]:
    """The default of every field not yet read (for a derived default)."""
    defaults: dict[str, Any] = {}
    for name, item in by_name.items():
        if name in values:
            continue
        if item.default is not MISSING:
            defaults[name] = item.default
        elif item.default_factory is not MISSING:
            defaults[name] = item.default_factory()
    return defaults


def markdown_table(table_rows: Iterable[Setting]) -> str:
    """The README's table of ``table_rows``: variable, meaning, default (documented rows)."""
    lines = ["| variable | meaning | default |", "|---|---|---|"]
    for row in table_rows:
        if row.documented:
            name = f"{row.env}<KEY>" if row.prefix else row.env
            lines.append(f"| `{name}` | {row.doc} | {row.shown_default} |")
    return "\n".join(lines) + "\n"


def _shown(default: Any) -> str:
    if default is None or default is MISSING:
        return "unset"
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


# parsers -----------------------------------------------------------------------------------
def text() -> Parser[str]:
    """Any text, kept as it is."""
    return Parser("text", str)


def path() -> Parser[Path]:
    """A filesystem path."""
    return Parser("a path", Path)


def flag() -> Parser[bool]:
    """``1`` (on) or ``0`` (off)."""

    def convert(raw: str) -> bool:
        value = raw.strip()
        if value not in ("0", "1"):
            raise ValueError(raw)
        return value == "1"

    return Parser("1 (on) or 0 (off)", convert)


def number(*, minimum: float = 0.0, above: bool = False, unit: str = "seconds") -> Parser[float]:
    """A finite number of ``unit``, at least ``minimum`` (``above``: greater than it)."""
    bound = f"greater than {minimum:g}" if above else f"at least {minimum:g}"

    def convert(raw: str) -> float:
        value = float(raw)
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise ValueError(raw)
        return value

    return Parser(f"a number of {unit} {bound}", convert)


def integer(*, minimum: int = 1, maximum: int | None = None, unit: str = "") -> Parser[int]:
    """A whole number from ``minimum`` (to ``maximum``), optionally of ``unit``."""
    what = f"a whole number of {unit}" if unit else "a whole number"
    bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"

    def convert(raw: str) -> int:
        value = int(raw)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(raw)
        return value

    return Parser(f"{what} {bound}", convert)


def choice(*names: str, upper: bool = False) -> Parser[str]:
    """One of ``names``, in any case (the value lower-cased, or upper-cased with ``upper``)."""

    def convert(raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in names:
            raise ValueError(raw)
        return value

    return Parser(f"one of {', '.join(names)}", convert)


def json_or_text() -> Parser[Any]:
    """The value as JSON where it parses, else as text (as Flask reads prefixed variables)."""

    def convert(raw: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    return Parser("JSON or text", convert)
