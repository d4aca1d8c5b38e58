"""Storage: from a URI to the store and key that hold it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.storage import (
    InvalidURI,
    LocalObjectStore,
    S3ObjectStore,
    Storage,
    make_s3_client,
    parse_uri,
)


class CountingFactory:
    """make_s3_client, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return make_s3_client()


def test_s3_uris_share_one_client_and_one_store_per_bucket(
    s3_env: dict[str, str], bucket: str
) -> None:
    factory = CountingFactory()
    storage = Storage(factory, allow_local=False)
    assert factory.calls == 0  # nothing is built before it is needed

    store, key = storage.open(f"s3://{bucket}/models/base.keras")
    again, other_key = storage.open(parse_uri(f"s3://{bucket}/data/"))
    elsewhere, _ = storage.open("s3://another-bucket/x")

    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, key) == (bucket, "models/base.keras")
    assert again is store
    assert other_key == "data/"
    assert isinstance(elsewhere, S3ObjectStore)
    assert elsewhere is not store
    assert elsewhere.client is store.client
    assert factory.calls == 1
    store.put(key, b"weights")
    assert again.get("models/base.keras").data == b"weights"


def test_file_uris_are_refused_unless_enabled() -> None:
    storage = Storage(CountingFactory(), allow_local=False)
    with pytest.raises(InvalidURI, match="file:// storage is not enabled"):
        storage.open("file:///etc/passwd")


def test_file_uris_map_to_absolute_paths_when_enabled(tmp_path: Path) -> None:
    factory = CountingFactory()
    storage = Storage(factory, allow_local=True, local_lock_dir=tmp_path / "locks")
    target = tmp_path / "out" / "model.keras"

    store, key = storage.open(f"file://{target}")
    store.put(key, b"weights")

    assert isinstance(store, LocalObjectStore)
    assert key == str(target).lstrip("/")
    assert target.read_bytes() == b"weights"
    assert storage.open(f"file://{tmp_path}/other")[0] is store
    assert factory.calls == 0
    assert not list(target.parent.glob(".*"))  # lock files live elsewhere


def test_malformed_uris_are_refused() -> None:
    storage = Storage(CountingFactory(), allow_local=True)
    for uri in ("http://example.com/x", "s3:///no-bucket", "file://host/x", "file:///a/../b"):
        with pytest.raises(InvalidURI):
            storage.open(uri)


def test_state_store_on_s3_gets_a_folder_prefix(s3_env: dict[str, str], bucket: str) -> None:
    storage = Storage(make_s3_client, allow_local=False)

    store, prefix = storage.open_state_store(f"s3://{bucket}/finetune/state")
    assert isinstance(store, S3ObjectStore)
    assert prefix == "finetune/state/"
    assert storage.open_state_store(f"s3://{bucket}")[1] == ""
    assert storage.open_state_store(f"s3://{bucket}/state/")[1] == "state/"


def test_state_store_on_a_local_directory(tmp_path: Path) -> None:
    # file:// is the operator's own setting here, so it works with allow_local off.
    storage = Storage(CountingFactory(), allow_local=False)

    store, prefix = storage.open_state_store(f"file://{tmp_path}/state")
    store.put_if_absent("jobs/1.json", b"{}")

    assert isinstance(store, LocalObjectStore)
    assert prefix == ""
    assert (tmp_path / "state" / "jobs" / "1.json").read_bytes() == b"{}"
