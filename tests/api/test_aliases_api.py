"""GET /v1/aliases and POST /v1/aliases/rollback through the real app, on local storage, on a
real S3 server (moto over HTTP), and with tenants."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Config
from service.jobs.aliases import AliasStore, AliasTarget
from service.storage.local import LocalObjectStore
from service.storage.s3 import S3ObjectStore
from tests.conftest import S3Client
from tests.helpers.auth import bearer


def _target(root: str, name: str) -> AliasTarget:
    return AliasTarget(
        job_id=f"ftj_{name}",
        keras_uri=f"{root}{name}/model.keras",
        saved_model_uri=f"{root}{name}/saved_model/",
        manifest_uri=f"{root}{name}/manifest.json",
    )


def _promoted(tmp_path: Path, *names: str) -> str:
    """A local alias promoted to ``names`` in order; its file:// URI."""
    path = tmp_path / "models" / "production.json"
    uri = f"file://{path}"
    aliases = AliasStore(LocalObjectStore(Path("/")), str(path).lstrip("/"), uri)
    for name in names:
        aliases.promote(_target(f"file://{tmp_path}/models/", name))
    return uri


def test_show_and_roll_back_an_alias(local_app: Flask, tmp_path: Path) -> None:
    client: FlaskClient = local_app.test_client()
    uri = _promoted(tmp_path, "v1", "v2")

    shown = client.get("/v1/aliases", query_string={"uri": uri})
    assert shown.status_code == 200, shown.get_json()
    alias = shown.get_json()
    assert alias["uri"] == uri and alias["version"] == 2
    assert alias["target"]["job_id"] == "ftj_v2"
    assert [state["target"]["job_id"] for state in alias["history"]] == ["ftj_v1"]

    rolled = client.post("/v1/aliases/rollback", json={"uri": uri, "version": 2})
    assert rolled.status_code == 200, rolled.get_json()
    back = rolled.get_json()
    assert back["target"]["job_id"] == "ftj_v1" and back["version"] == 3
    assert back["change"] == {"action": "rollback", "restored_version": 1}
    assert client.get("/v1/aliases", query_string={"uri": uri}).get_json() == back

    again = client.post("/v1/aliases/rollback", json={"uri": uri})
    assert again.status_code == 409 and "no earlier target" in again.get_json()["message"]
    stale = client.post("/v1/aliases/rollback", json={"uri": uri, "version": 2})
    assert stale.status_code == 409 and "not 2" in stale.get_json()["message"]


def test_missing_malformed_and_invalid_aliases(local_app: Flask, tmp_path: Path) -> None:
    client = local_app.test_client()
    missing = client.get("/v1/aliases", query_string={"uri": f"file://{tmp_path}/none.json"})
    assert missing.status_code == 404 and "No alias at" in missing.get_json()["message"]
    (tmp_path / "notes.json").write_text('{"hello": "world"}')
    invalid = client.get("/v1/aliases", query_string={"uri": f"file://{tmp_path}/notes.json"})
    assert invalid.status_code == 422
    assert "is not an alias object" in invalid.get_json()["errors"]["query"]["uri"][0]
    folder = client.get("/v1/aliases", query_string={"uri": f"file://{tmp_path}/"})
    assert folder.status_code == 422 and folder.get_json()["errors"]["query"]["uri"]
    unknown = client.get("/v1/aliases", query_string={"uri": f"file://{tmp_path}/a", "x": "1"})
    assert unknown.status_code == 422
    no_body = client.post("/v1/aliases/rollback", json={})
    assert no_body.status_code == 422 and no_body.get_json()["errors"]["json"]["uri"]


def test_file_uris_are_refused_where_local_storage_is_off(client: FlaskClient) -> None:
    answer = client.get("/v1/aliases", query_string={"uri": "file:///tmp/production.json"})
    assert answer.status_code == 422
    assert "file:// storage is not enabled" in answer.get_json()["errors"]["query"]["uri"][0]


def test_a_tenant_reads_and_rolls_back_only_within_its_prefixes(
    auth_client: FlaskClient, tokens: dict[str, str]
) -> None:
    team_a = bearer(tokens["team-a"])
    other = auth_client.get(
        "/v1/aliases", query_string={"uri": "s3://models/team-b/prod.json"}, headers=team_a
    )
    assert other.status_code == 403 and "may not read" in other.get_json()["message"]
    # team-a reads s3://models/team-a/ but writes only s3://models/team-a/out/.
    read_only = auth_client.post(
        "/v1/aliases/rollback", json={"uri": "s3://models/team-a/prod.json"}, headers=team_a
    )
    assert read_only.status_code == 403
    assert "may not write" in read_only.get_json()["errors"]["json"]["uri"][0]


def test_on_s3(tmp_path: Path, s3_env: dict[str, str], s3_client: S3Client, bucket: str) -> None:
    uri = f"s3://{bucket}/aliases/production.json"
    aliases = AliasStore(S3ObjectStore(s3_client, bucket), "aliases/production.json", uri)
    for name in ("v1", "v2"):
        aliases.promote(_target(f"s3://{bucket}/models/", name))
    app = create_app(Config(state_uri=f"s3://{bucket}/state", work_dir=tmp_path / "work"))
    client = app.test_client()
    rolled = client.post("/v1/aliases/rollback", json={"uri": uri})
    assert rolled.status_code == 200 and rolled.get_json()["target"]["job_id"] == "ftj_v1"
    assert aliases.read().current.target.job_id == "ftj_v1"
    gone = client.get("/v1/aliases", query_string={"uri": f"s3://no-such-bucket-q/{bucket}.json"})
    assert gone.status_code == 404
