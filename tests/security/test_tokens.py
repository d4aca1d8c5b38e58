"""Tokens and the auth file: hashing, authentication, refusal of bad files, the token command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.security import AuthFileError, TokenTable, hash_token, new_token
from service.security.tokens import TOKEN_PREFIX
from tests.helpers.auth import tenant_prefixes, write_auth_file

REPO = Path(__file__).resolve().parents[2]


def test_tokens_are_random_and_prefixed() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith(TOKEN_PREFIX) and len(t) == len(TOKEN_PREFIX) + 43 for t in tokens)


def test_each_token_authenticates_as_its_tenant_and_nothing_else_does(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    tokens = write_auth_file(
        path, {"team-a": tenant_prefixes("team-a"), "team-b": tenant_prefixes("team-b")}
    )
    table = TokenTable.load(path)
    assert table.tenants == ["team-a", "team-b"] and len(table) == 2
    a = table.authenticate(tokens["team-a"])
    assert a is not None and a.tenant == "team-a" and a.token_name == "team-a-ci"
    assert a.may_read("s3://data/team-a/train/") and not a.may_read("s3://data/team-b/train/")
    assert a.may_write("s3://models/team-a/out/v2/")
    assert not a.may_write("s3://models/team-a/v1/")  # readable, not writable
    b = table.authenticate(tokens["team-b"])
    assert b is not None and b.tenant == "team-b"
    for wrong in (
        "",
        tokens["team-a"][:-1],
        tokens["team-a"] + "x",
        tokens["team-a"].upper(),
        hash_token(tokens["team-a"]),  # the stored hash is not a password
        "x" * 10_000,
    ):
        assert table.authenticate(wrong) is None


def test_the_file_holds_hashes_not_tokens(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    tokens = write_auth_file(path, {"team-a": tenant_prefixes("team-a")})
    text = path.read_text()
    assert tokens["team-a"] not in text
    assert hash_token(tokens["team-a"]) in text


def _valid() -> dict[str, Any]:
    return {
        "tenants": {
            "team-a": {
                "read": ["s3://data/team-a/"],
                "write": ["s3://models/team-a/out/"],
                "tokens": [{"name": "ci", "sha256": hash_token("ftk_x")}],
            }
        }
    }


def _edit(path: str, value: Any) -> dict[str, Any]:
    data = _valid()
    node: Any = data
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "must be an object"),
        ({"tenants": {}, "users": {}}, "unknown keys ['users']"),
        ({"tenants": []}, "tenants: must be an object"),
        ({"tenants": {}}, "no tokens are configured"),
        (_edit("tenants.team-a.tokens", []), "no tokens are configured"),
        (_edit("tenants.team-a.tokens.0.sha256", "ftk_abc"), "never the token itself"),
        (_edit("tenants.team-a.tokens.0.sha256", "ab" * 31), "64 hex digits"),
        (_edit("tenants.team-a.tokens.0", "ftk_abc"), "must be an object"),
        (_edit("tenants.team-a.tokens.0.secret", "x"), "unknown keys ['secret']"),
        (_edit("tenants.team-a.tokens.0.name", ""), "1-64 characters"),
        (_edit("tenants.team-a.tokens", "ftk_abc"), "must be a list"),
        (_edit("tenants.team-a.read", "s3://data/team-a/"), "must be a list of storage prefixes"),
        (_edit("tenants.team-a.read", ["s3://data/team-a/../team-b/"]), "'..'"),
        (_edit("tenants.team-a.write", ["https://example.com/"]), "Unsupported storage scheme"),
        (_edit("tenants.team-a.admin", True), "unknown keys ['admin']"),
        ({"tenants": {"team a": _valid()["tenants"]["team-a"]}}, "a tenant name is"),
        (
            {
                "tenants": {
                    "team-a": _valid()["tenants"]["team-a"],
                    "team-b": _valid()["tenants"]["team-a"],
                }
            },
            "listed twice",
        ),
    ],
)
def test_bad_auth_files_are_refused_saying_where_and_what(
    tmp_path: Path, data: Any, expected: str
) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AuthFileError) as caught:
        TokenTable.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message, message


def test_unreadable_and_non_json_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match="cannot be read"):
        TokenTable.load(tmp_path / "missing.json")
    yaml_like = tmp_path / "auth.yaml"
    yaml_like.write_text("tenants:\n  team-a:\n    tokens: []\n")
    with pytest.raises(AuthFileError, match=r"not valid JSON: .* line 1, column 1"):
        TokenTable.load(yaml_like)


def _service(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_command_adds_entries_that_the_service_accepts(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    first = _service(
        "token",
        "--tenant",
        "team-a",
        "--name",
        "ci",
        "--auth-file",
        str(path),
        "--read",
        "s3://data/team-a/",
        "--write",
        "s3://models/team-a/out/",
    )
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and "\n" not in token
    assert token not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    second = _service("token", "--tenant", "team-a", "--name", "laptop", "--auth-file", str(path))
    assert second.returncode == 0, second.stderr
    table = TokenTable.load(path)
    for given, name in ((token, "ci"), (second.stdout.strip(), "laptop")):
        principal = table.authenticate(given)
        assert principal is not None and principal.tenant == "team-a"
        assert principal.token_name == name
        assert principal.may_read("s3://data/team-a/x/")
        assert principal.may_write("s3://models/team-a/out/v1/")


def test_token_command_without_a_file_prints_the_entry_to_add() -> None:
    result = _service("token", "--tenant", "team-b")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert hash_token(token) in result.stderr
    assert token not in result.stderr


def test_token_command_without_a_file_prints_the_prefixes_with_the_tenant() -> None:
    result = _service(
        "token", "--tenant", "team-c", "--read", "s3://data/team-c/", "--write", "s3://out/c/"
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    pasted = next(line for line in result.stderr.splitlines() if '"team-c": {' in line)
    table = TokenTable.from_dict(json.loads('{"tenants": {' + pasted + "}}"), source="pasted")
    principal = table.authenticate(token)
    assert principal is not None and principal.tenant == "team-c"
    assert principal.may_read("s3://data/team-c/x.keras")
    assert principal.may_write("s3://out/c/v1/") and not principal.may_write("s3://data/team-c/")


def test_token_command_refuses_a_bad_tenant_name_and_a_broken_file(tmp_path: Path) -> None:
    bad_name = _service("token", "--tenant", "team a")
    assert bad_name.returncode == 2 and "not allowed" in bad_name.stderr
    broken = tmp_path / "auth.json"
    broken.write_text("{not json")
    refused = _service("token", "--tenant", "team-a", "--auth-file", str(broken))
    assert refused.returncode == 2 and "not valid JSON" in refused.stderr
    assert broken.read_text() == "{not json"
