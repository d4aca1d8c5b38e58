"""Making a token and the hashed entry that goes into the auth file for it."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.security.errors import AuthFileError
from service.security.tokens import TENANT_NAME, TokenTable, hash_token, new_token


@dataclass(frozen=True)
class IssuedToken:
    """A new token (shown once, stored nowhere) and its auth-file entry."""

    token: str
    tenant: str
    entry: dict[str, str]


def issue_token(tenant: str, name: str = "token") -> IssuedToken:
    """A fresh token for ``tenant`` and its ``{"name", "sha256"}`` entry.

    Raises:
        AuthFileError: ``tenant`` or ``name`` is not allowed in the auth file.
    """
    if not TENANT_NAME.match(tenant):
        raise AuthFileError(
            f"Tenant name {tenant!r} is not allowed: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    if not 0 < len(name) <= 64:
        raise AuthFileError("A token name is 1-64 characters.")
    token = new_token()
    return IssuedToken(token, tenant, {"name": name, "sha256": hash_token(token)})


def tenant_entry(
    issued: IssuedToken, read: Sequence[str] = (), write: Sequence[str] = ()
) -> dict[str, Any]:
    """A new tenant's auth-file entry: its prefixes and ``issued`` as its one token."""
    return {
        "read": list(dict.fromkeys(read)),
        "write": list(dict.fromkeys(write)),
        "tokens": [issued.entry],
    }


def add_to_auth_file(
    path: Path, issued: IssuedToken, read: Sequence[str] = (), write: Sequence[str] = ()
) -> None:
    """Add ``issued`` (and any new ``read``/``write`` prefixes) to the auth file at ``path``.

    Creates the file (mode 0600) and the tenant where missing. The result is checked as the
    service would check it before it replaces the old file, atomically.

    Raises:
        AuthFileError: The existing file is unusable, or the result would be.
    """
    data: dict[str, Any] = {"tenants": {}}
    if path.exists():
        table_text = path.read_text(encoding="utf-8")
        TokenTable.load(path)  # refuse to edit a file the service would refuse
        data = json.loads(table_text)
    settings = data["tenants"].get(issued.tenant)
    if settings is None:
        data["tenants"][issued.tenant] = tenant_entry(issued, read, write)
    else:
        for key, prefixes in (("read", read), ("write", write)):
            current = settings.setdefault(key, [])
            current.extend(prefix for prefix in prefixes if prefix not in current)
        settings.setdefault("tokens", []).append(issued.entry)
    TokenTable.from_dict(data, source=str(path))
    text = json.dumps(data, indent=2) + "\n"
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
