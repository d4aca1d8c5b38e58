"""Downloading listed objects: one GET for small objects, the managed transfer for large ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from mypy_boto3_s3 import S3Client

from service.storage import NoSuchKey, S3ObjectStore
from service.storage.base import ObjectInfo


class CountingStore(S3ObjectStore):
    """Records which transfer each download took (a real store on the moto server)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.managed: list[str] = []

    def download_file(self, key: str, path: Path) -> None:
        self.managed.append(key)
        super().download_file(key, path)


def test_small_objects_take_one_get_and_large_ones_the_managed_transfer(
    s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    store = CountingStore(
        s3_client, bucket, transfer_config=TransferConfig(multipart_threshold=4096)
    )
    files = {"a/1.png": os.urandom(100), "a/2.png": b"", "b/big.tfrecord": os.urandom(10_000)}
    for key, data in files.items():
        store.put(f"data/{key}", data)

    infos = store.download_prefix("data/", tmp_path / "out")

    assert [info.key for info in infos] == [f"data/{key}" for key in sorted(files)]
    for key, data in files.items():
        assert (tmp_path / "out" / key).read_bytes() == data
    assert store.managed == ["data/b/big.tfrecord"]
    assert not [p for p in (tmp_path / "out").rglob(".tmp-*")]


def test_an_object_deleted_after_the_listing_is_no_such_key(
    s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    store = S3ObjectStore(s3_client, bucket)
    store.put("data/gone.png", b"x")
    info = ObjectInfo(key="data/gone.png", size=1, etag="")
    store.delete("data/gone.png")

    with pytest.raises(NoSuchKey):
        store.download_listed(info, tmp_path / "gone.png")
    assert list(tmp_path.iterdir()) == []
