"""Aliases: a named pointer to a published model, changed only by compare-and-swap.

An alias is one JSON object at a storage URI (``s3://models/flowers/production.json``)::

    {"target": {"job_id", "keras_uri", "saved_model_uri", "manifest_uri"},
     "version": 3, "updated_at": "2026-12-02T19:30:00.000Z",
     "change": {"action": "promote", "job_id": "ftj_..."},
     "history": [{"target", "version", "updated_at", "change"}, ...]}

``history`` holds the earlier states, oldest first (the newest HISTORY_LIMIT of them). A
promotion makes a job's model the target; a rollback makes the target the one that was current
before the current one was made current (``change``: ``{"action": "rollback",
"restored_version": n}``), so rollbacks in a row walk back through the promotions.

Every change reads the object with its ETag and writes it back with ``If-Match`` (or, for a new
alias, ``If-None-Match: *``); a lost race re-reads and recomputes, so of many jobs promoting at
once every promotion lands, one after the other, and none is lost. ``version`` counts the
changes (ETags alone would not: identical bytes keep an identical ETag).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.jobs.clock import now_iso
from service.jobs.errors import AliasChanged, InvalidAlias, NoEarlierTarget, NoSuchAlias
from service.retry import Policy
from service.storage.base import ObjectStore
from service.storage.errors import NoSuchKey, PreconditionFailed

#: Earlier states an alias keeps; older ones are dropped.
HISTORY_LIMIT = 100
#: A lost compare-and-swap race: re-read and try again, up to 50 tries, after a random wait of
#: up to 10 ms doubling to 250 ms (full jitter: racing promotions spread out at once).
ALIAS_COMPARE_AND_SWAP = Policy(
    "alias compare-and-swap",
    base_delay=0.01,
    max_delay=0.25,
    attempts=50,
    jitter=(0.0, 1.0),
    retry_on=(PreconditionFailed,),
)
TARGET_FIELDS = ("job_id", "keras_uri", "saved_model_uri", "manifest_uri")
PROMOTE = "promote"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class AliasTarget:
    """The model an alias points at: the job that published it and its URIs."""

    job_id: str
    keras_uri: str
    saved_model_uri: str
    manifest_uri: str

    def to_dict(self) -> dict[str, str]:
        """The ``target`` object."""
        return {name: getattr(self, name) for name in TARGET_FIELDS}

    @classmethod
    def from_dict(cls, data: Any) -> AliasTarget:
        """Reads a ``target`` object; InvalidAlias where a field is missing or not a string."""
        if not isinstance(data, dict) or not all(
            isinstance(data.get(name), str) for name in TARGET_FIELDS
        ):
            raise InvalidAlias(f"target must be an object with {', '.join(TARGET_FIELDS)}")
        return cls(**{name: data[name] for name in TARGET_FIELDS})


@dataclass(frozen=True)
class AliasState:
    """One state of an alias: what it pointed at, from which change on."""

    target: AliasTarget
    version: int
    updated_at: str
    change: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The state as the alias object holds it (without history)."""
        return {
            "target": self.target.to_dict(),
            "version": self.version,
            "updated_at": self.updated_at,
            "change": dict(self.change),
        }

    @classmethod
    def from_dict(cls, data: Any) -> AliasState:
        """Reads one state; InvalidAlias where it is malformed."""
        if not isinstance(data, dict):
            raise InvalidAlias("a state must be an object")
        version, change = data.get("version"), data.get("change", {})
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidAlias("version must be a whole number of at least 1")
        if not isinstance(change, dict):
            raise InvalidAlias("change must be an object")
        return cls(
            target=AliasTarget.from_dict(data.get("target")),
            version=version,
            updated_at=str(data.get("updated_at", "")),
            change=change,
        )


@dataclass(frozen=True)
class Alias:
    """An alias as stored: its current state and the earlier ones, oldest first."""

    current: AliasState
    history: tuple[AliasState, ...]

    def to_dict(self) -> dict[str, Any]:
        """The alias object."""
        return {
            **self.current.to_dict(),
            "history": [state.to_dict() for state in self.history],
        }

    def to_json(self) -> bytes:
        """The alias object's bytes."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Alias:
        """Reads an alias object; InvalidAlias where it is not one."""
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise InvalidAlias(f"not JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise InvalidAlias("not a JSON object")
        history = raw.get("history", [])
        if not isinstance(history, list):
            raise InvalidAlias("history must be a list")
        return cls(
            current=AliasState.from_dict(raw),
            history=tuple(AliasState.from_dict(item) for item in history),
        )

    def state(self, version: int) -> AliasState | None:
        """The state of ``version``, where it is still kept."""
        if version == self.current.version:
            return self.current
        return next((state for state in self.history if state.version == version), None)

    def _effective(self, state: AliasState) -> AliasState | None:
        """The promotion a state stands for: itself, or the state a rollback restored."""
        if state.change.get("action") != ROLLBACK:
            return state
        restored = state.change.get("restored_version")
        return self.state(restored) if isinstance(restored, int) else None

    def rollback_state(self) -> AliasState:
        """The state a rollback restores: the one current before the current one came.

        Raises:
            NoEarlierTarget: There is none (a first promotion, or history too short).
        """
        base = self._effective(self.current)
        earlier = None if base is None else self.state(base.version - 1)
        restored = None if earlier is None else self._effective(earlier)
        if restored is None:
            raise NoEarlierTarget(
                f"the alias has no earlier target to roll back to (version "
                f"{self.current.version}, {len(self.history)} earlier states kept)."
            )
        return restored


class AliasStore:
    """Reads and changes the alias at one key of one store.

    Args:
        store: Where the alias object is.
        key: Its key.
        uri: Its URI, for messages.
        policy: How lost compare-and-swap races are retried.
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        uri: str,
        policy: Policy = ALIAS_COMPARE_AND_SWAP,
    ) -> None:
        self._store = store
        self._key = key
        self.uri = uri
        self._policy = policy

    def read(self) -> Alias:
        """The alias. Raises NoSuchAlias, InvalidAlias (naming the URI), StorageError."""
        alias, _ = self._read()
        if alias is None:
            raise NoSuchAlias(self.uri)
        return alias

    def promote(self, target: AliasTarget) -> Alias:
        """Point the alias at ``target`` (creating it where there is none); returns it as
        written. Raises InvalidAlias, StorageError."""

        def change(alias: Alias | None) -> tuple[AliasTarget, dict[str, Any]]:
            return target, {"action": PROMOTE, "job_id": target.job_id}

        return self._change(change)

    def rollback(self, expected_version: int | None = None) -> Alias:
        """Point the alias back at the target before the current one; returns it as written.

        Args:
            expected_version: Roll back only while the alias is at this version (what the
                caller saw); None: whatever it is at when the write lands.

        Raises:
            NoSuchAlias, NoEarlierTarget, AliasChanged, InvalidAlias, StorageError.
        """

        def change(alias: Alias | None) -> tuple[AliasTarget, dict[str, Any]]:
            if alias is None:
                raise NoSuchAlias(self.uri)
            if expected_version is not None and alias.current.version != expected_version:
                raise AliasChanged(self.uri, expected_version, alias.current.version)
            restored = alias.rollback_state()
            return restored.target, {"action": ROLLBACK, "restored_version": restored.version}

        return self._change(change)

    def _read(self) -> tuple[Alias | None, str | None]:
        try:
            stored = self._store.get(self._key)
        except NoSuchKey:
            return None, None
        try:
            return Alias.from_json(stored.data), stored.etag
        except InvalidAlias as exc:
            raise InvalidAlias(f"{self.uri} is not an alias object: {exc}") from exc

    def _change(
        self, change: Callable[[Alias | None], tuple[AliasTarget, dict[str, Any]]]
    ) -> Alias:
        def attempt() -> Alias:
            alias, etag = self._read()
            target, what = change(alias)
            if alias is not None and what["action"] == PROMOTE and alias.current.target == target:
                return alias  # a repeated promotion of the same model (a retried attempt)
            if alias is None:
                written = Alias(AliasState(target, 1, now_iso(), what), ())
                self._store.put_if_absent(self._key, written.to_json())
                return written
            history = (*alias.history, alias.current)[-HISTORY_LIMIT:]
            state = AliasState(target, alias.current.version + 1, now_iso(), what)
            written = Alias(state, history)
            assert etag is not None
            self._store.put_if_match(self._key, written.to_json(), etag)
            return written

        return self._policy.call(attempt)
