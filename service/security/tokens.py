"""Bearer tokens: made here, stored only as hashes in the auth file, checked in constant time.

The auth file (``FINETUNE_AUTH_FILE``) is JSON::

    {
      "tenants": {
        "team-a": {
          "read": ["s3://data/team-a/", "s3://models/team-a/"],
          "write": ["s3://models/team-a/out/"],
          "tokens": [{"name": "ci", "sha256": "<64 hex digits>"}]
        }
      }
    }

Tokens are hashed with plain SHA-256, not a slow password hash: every token is 256 bits from
``secrets``, so there is no dictionary to try and a brute force is out of reach whatever the
hash costs. Slow hashes (bcrypt, scrypt, Argon2) protect low-entropy passwords; here they would
only slow down every request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.security.errors import AuthFileError, InvalidPrefix
from service.security.prefixes import StoragePrefix
from service.security.principal import Principal

#: Every token starts with this, so that secret scanners and the log redaction can spot one.
TOKEN_PREFIX = "ftk_"
#: Random bytes per token (256 bits).
TOKEN_BYTES = 32
#: Longest Authorization credential looked at; anything longer cannot be a token of ours.
MAX_TOKEN_LENGTH = 256
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_TOP_KEYS = frozenset({"tenants"})
_TENANT_KEYS = frozenset({"read", "write", "tokens"})
_TOKEN_KEYS = frozenset({"name", "sha256"})


def new_token() -> str:
    """A fresh random token: ``ftk_`` and 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in the auth file for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


class TokenTable:
    """The tokens of the auth file, each mapped to its tenant's principal."""

    def __init__(self, entries: list[_Entry], source: str) -> None:
        self._entries = entries
        self.source = source

    @property
    def tenants(self) -> list[str]:
        """The tenants that hold at least one token, sorted."""
        return sorted({entry.principal.tenant for entry in self._entries})

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or None where it is not a configured token.

        Every stored digest is compared, with ``hmac.compare_digest``, whether or not an
        earlier one matched: how long this takes says nothing about which digest, or how much
        of one, a guess came close to.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.principal
        return found

    @classmethod
    def load(cls, path: str | Path) -> TokenTable:
        """Read and check the auth file.

        Raises:
            AuthFileError: The file cannot be read, is not JSON, or breaks a rule; the message
                names the file, the place in it and what to change.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuthFileError(
                f"FINETUNE_AUTH_FILE {path} cannot be read: {exc.strerror or exc}."
            ) from exc
        except UnicodeDecodeError as exc:
            raise AuthFileError(f"FINETUNE_AUTH_FILE {path} is not UTF-8 text.") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuthFileError(
                f"FINETUNE_AUTH_FILE {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}."
            ) from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "the auth file") -> TokenTable:
        """Check the parsed auth file and build the table (see the module docstring).

        Raises:
            AuthFileError: A rule is broken; the message says where and what to change.
        """

        def fail(where: str, problem: str) -> AuthFileError:
            return AuthFileError(f"FINETUNE_AUTH_FILE {source}: {where}: {problem}")

        if not isinstance(data, Mapping):
            raise fail("top level", 'must be an object: {"tenants": {...}}.')
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise fail("top level", f"unknown keys {sorted(unknown)}; only 'tenants' is allowed.")
        tenants = data.get("tenants")
        if not isinstance(tenants, Mapping):
            raise fail("tenants", "must be an object mapping tenant names to their settings.")
        entries: list[_Entry] = []
        seen: dict[bytes, str] = {}
        for tenant, settings in tenants.items():
            where = f"tenants.{tenant}"
            if not isinstance(tenant, str) or not TENANT_NAME.match(tenant):
                raise fail(
                    where,
                    "a tenant name is 1-63 letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit.",
                )
            if not isinstance(settings, Mapping):
                raise fail(where, 'must be an object with "read", "write" and "tokens".')
            unknown = set(settings) - _TENANT_KEYS
            if unknown:
                raise fail(where, f"unknown keys {sorted(unknown)}; allowed: read, write, tokens.")
            read = _prefixes(settings.get("read", []), f"{where}.read", fail)
            write = _prefixes(settings.get("write", []), f"{where}.write", fail)
            tokens = settings.get("tokens")
            if not isinstance(tokens, list):
                raise fail(f"{where}.tokens", 'must be a list of {"name", "sha256"} objects.')
            for index, token in enumerate(tokens):
                token_where = f"{where}.tokens[{index}]"
                if not isinstance(token, Mapping):
                    raise fail(token_where, 'must be an object {"name": ..., "sha256": ...}.')
                unknown = set(token) - _TOKEN_KEYS
                if unknown:
                    raise fail(
                        token_where, f"unknown keys {sorted(unknown)}; allowed: name, sha256."
                    )
                digest = token.get("sha256")
                if not isinstance(digest, str) or not SHA256_HEX.match(digest.lower()):
                    raise fail(
                        f"{token_where}.sha256",
                        "must be the 64 hex digits of the token's SHA-256 (make one with "
                        "`python -m service token --tenant NAME`); never the token itself.",
                    )
                name = token.get("name", f"token-{index}")
                if not isinstance(name, str) or not 0 < len(name) <= 64:
                    raise fail(f"{token_where}.name", "must be a string of 1-64 characters.")
                raw = bytes.fromhex(digest.lower())
                if raw in seen:
                    raise fail(
                        f"{token_where}.sha256",
                        f"the same token is listed twice (also under {seen[raw]}); "
                        "a token belongs to one tenant.",
                    )
                seen[raw] = token_where
                principal = Principal(tenant=tenant, token_name=name, read=read, write=write)
                entries.append(_Entry(raw, principal))
        if not entries:
            raise fail(
                "tenants",
                "no tokens are configured. Add one (`python -m service token --tenant NAME "
                "--auth-file FILE`), or unset FINETUNE_AUTH_FILE to run open for local use.",
            )
        return cls(entries, source)


def _prefixes(value: Any, where: str, fail: Any) -> tuple[StoragePrefix, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise fail(where, 'must be a list of storage prefixes, e.g. ["s3://data/team-a/"].')
    prefixes = []
    for item in value:
        try:
            prefixes.append(StoragePrefix.parse(item))
        except InvalidPrefix as exc:
            raise fail(where, f"{item!r} is not a usable prefix: {exc}") from exc
    return tuple(prefixes)
