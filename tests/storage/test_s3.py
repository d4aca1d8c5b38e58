"""What only the S3 backend has: pagination, the client's settings, and boto3's failures."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from service.config import Config
from service.settings import SettingError
from service.storage import (
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
    S3ObjectStore,
    StorageError,
    StorageUnavailable,
    make_s3_client,
)
from service.storage.client import StoragePatience, choose_addressing_style
from tests.helpers.net import free_port


def test_list_paginates_beyond_1000_keys(s3_client: Any, bucket: str) -> None:
    store = S3ObjectStore(s3_client, bucket)
    # moto answers in about 6 ms a request: 1,050 keys is the least that makes a second page.
    keys = [f"many/{index:05d}" for index in range(1050)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: store.put(key, b"."), keys))
    store.put("other/zzz", b".")
    pages: list[int] = []
    s3_client.meta.events.register(
        "after-call.s3.ListObjectsV2",
        lambda parsed, **_: pages.append(len(parsed.get("Contents", []))),
    )

    listed = [info.key for info in store.list("many/")]

    assert listed == keys
    assert pages == [1000, 50]
    assert [info.key for info in store.list("many/", start_after="many/01047")] == keys[-2:]


def test_client_from_environment_talks_path_style_to_the_custom_endpoint(
    s3_env: dict[str, str], bucket: str
) -> None:
    client: Any = make_s3_client()

    assert client.meta.endpoint_url == s3_env["AWS_ENDPOINT_URL_S3"]
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert client.meta.region_name == "us-east-1"
    S3ObjectStore(client, bucket).put("ok", b"reached")


def test_addressing_style_defaults_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    assert choose_addressing_style(None) == "auto"
    assert choose_addressing_style(None, endpoint_url="http://minio:9000") == "path"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert choose_addressing_style(None) == "path"
    configured = Config.from_env({"FINETUNE_S3_ADDRESSING_STYLE": "Virtual"})
    assert choose_addressing_style(configured.s3_addressing_style) == "virtual"
    with pytest.raises(SettingError, match="FINETUNE_S3_ADDRESSING_STYLE must be one of auto"):
        Config.from_env({"FINETUNE_S3_ADDRESSING_STYLE": "sideways"})
    with pytest.raises(ValueError, match="sideways"):
        choose_addressing_style("sideways")


def test_region_defaults_to_us_east_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    assert make_s3_client().meta.region_name == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert make_s3_client().meta.region_name == "eu-west-3"


def test_unreachable_endpoint_is_unavailable_quickly(s3_env: dict[str, str]) -> None:
    # Nothing listens on a just-freed port: every connection is refused at once.
    client = make_s3_client(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        patience=StoragePatience("test", connect_timeout=1, read_timeout=1, max_attempts=2),
    )
    store = S3ObjectStore(client, "any-bucket")
    started = time.monotonic()

    with pytest.raises(StorageUnavailable, match="could not be reached") as caught:
        store.get("jobs/1.json")

    assert time.monotonic() - started < 5
    assert caught.value.__cause__ is not None
    with pytest.raises(StorageUnavailable):
        store.put_if_absent("jobs/1.json", b"x")
    with pytest.raises(StorageUnavailable):
        list(store.list("jobs/"))


def test_missing_bucket_names_the_bucket(s3_client: Any, tmp_path: Path) -> None:
    store = S3ObjectStore(s3_client, "no-such-bucket-here")
    source = tmp_path / "f"
    source.write_bytes(b"x")
    attempts: dict[str, Callable[[], object]] = {
        "get": lambda: store.get("k"),
        "put": lambda: store.put("k", b"x"),
        "put_if_absent": lambda: store.put_if_absent("k", b"x"),
        "put_if_match": lambda: store.put_if_match("k", b"x", "0" * 32),
        "list": lambda: list(store.list("")),
        "exists": lambda: store.exists("k"),
        "download_file": lambda: store.download_file("k", tmp_path / "out"),
        "upload_file": lambda: store.upload_file(source, "k"),
        "delete": lambda: store.delete("k"),
    }
    for operation, attempt in attempts.items():
        with pytest.raises(NoSuchBucket, match="no-such-bucket-here") as caught:
            attempt()
        assert isinstance(caught.value, StorageError), operation
        assert caught.value.bucket == "no-such-bucket-here"


def test_missing_key_in_an_existing_bucket_is_not_a_missing_bucket(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    store = S3ObjectStore(s3_client, bucket)
    with pytest.raises(NoSuchKey):
        store.download_file("absent", tmp_path / "out")
    assert store.exists("absent") is False


class LoseFirstAnswer:
    """Make botocore retry one PutObject that succeeded, as if its response had been lost.

    A real network can drop the answer to a write the server applied; botocore then retries,
    and a conditional retry fails its own condition. This hook reproduces that against the
    real server, by asking botocore's retry machinery for one extra attempt.
    """

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, response: Any, attempts: int, **_: Any) -> float | None:
        if self.fired or attempts != 1 or response is None or response[0].status_code != 200:
            return None
        self.fired = True
        return 0.0


def test_conditional_write_whose_answer_was_lost_still_succeeds(
    s3_client: Any, bucket: str
) -> None:
    store = S3ObjectStore(s3_client, bucket)
    hook = LoseFirstAnswer()
    s3_client.meta.events.register("needs-retry.s3.PutObject", hook)

    etag = store.put_if_absent("jobs/1.json", b"v1")
    assert hook.fired
    assert etag == hashlib.md5(b"v1").hexdigest()

    hook.fired = False
    new = store.put_if_match("jobs/1.json", b"v2", etag)
    assert hook.fired
    assert new == hashlib.md5(b"v2").hexdigest()


def test_lost_answer_does_not_hide_a_real_conflict(s3_client: Any, bucket: str) -> None:
    store = S3ObjectStore(s3_client, bucket)
    store.put("jobs/1.json", b"someone else's")
    s3_client.meta.events.register("needs-retry.s3.PutObject", LoseFirstAnswer())

    with pytest.raises(PreconditionFailed):
        store.put_if_absent("jobs/1.json", b"mine")
    assert store.get("jobs/1.json").data == b"someone else's"


def test_description_names_bucket_and_endpoint(s3_client: Any, bucket: str) -> None:
    description = S3ObjectStore(s3_client, bucket).description
    assert description.startswith(f"s3://{bucket} at http://127.0.0.1:")


def test_constructor_rejects_a_uri_for_a_bucket(s3_client: Any) -> None:
    with pytest.raises(ValueError, match="Received: bucket='s3://x/y'"):
        S3ObjectStore(s3_client, "s3://x/y")
