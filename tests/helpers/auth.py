"""Auth files with real tokens for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.security.issuing import issue_token


def tenant_prefixes(tenant: str) -> dict[str, list[str]]:
    """The prefixes of a test tenant: its data and models to read, its out/ folder to write."""
    return {
        "read": [f"s3://data/{tenant}/", f"s3://models/{tenant}/"],
        "write": [f"s3://models/{tenant}/out/"],
    }


def write_auth_file(path: Path, tenants: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Write an auth file with one fresh token per tenant; return tenant -> token.

    Args:
        path: Where to write the file.
        tenants: tenant -> {"read": [...], "write": [...]}.
    """
    tokens: dict[str, str] = {}
    body: dict[str, Any] = {"tenants": {}}
    for tenant, prefixes in tenants.items():
        issued = issue_token(tenant, name=f"{tenant}-ci")
        tokens[tenant] = issued.token
        body["tenants"][tenant] = {**prefixes, "tokens": [issued.entry]}
    path.write_text(json.dumps(body, indent=2))
    return tokens


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}
