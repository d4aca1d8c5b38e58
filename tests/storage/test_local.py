"""What only the local-directory backend has: key rules, its lock and temporary files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.storage import InvalidKey, LocalObjectStore, NoSuchKey, StorageError


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "a/../../b",
        "..",
        "a//b",
        "a/./b",
        "dir/",
        ".tmp-x",
        "a/.tmp-1/b",
        ".locks/x",
    ],
)
def test_keys_that_are_not_plain_relative_paths_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path / "root")
    with pytest.raises(InvalidKey) as caught:
        store.put(key, b"x")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, StorageError)
    assert repr(key) in str(caught.value)
    assert not (tmp_path / "b").exists()


def test_listing_skips_locks_and_temporary_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put("jobs/1.json", b"1")
    store.put_if_match("jobs/1.json", b"2", store.get("jobs/1.json").etag)
    (tmp_path / "jobs" / ".tmp-crashed-writer").write_bytes(b"half")

    assert (tmp_path / ".locks").is_dir()
    assert [info.key for info in store.list()] == ["jobs/1.json"]


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    etag = store.put_if_absent("a/b/c", b"1")
    with pytest.raises(StorageError):
        store.put_if_absent("a/b/c", b"2")
    store.put_if_match("a/b/c", b"3", etag)
    store.put("a/b/d", b"4")
    source = tmp_path / "upload-me"
    source.write_bytes(b"5")
    store.upload_file(source, "a/e")

    assert sorted(path.name for path in tmp_path.rglob(".tmp-*")) == []


def test_a_key_below_an_existing_object_is_a_storage_error(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put("a", b"file")
    with pytest.raises(StorageError, match="could not write"):
        store.put("a/b", b"below a file")


def test_etag_of_a_listing_follows_a_rewrite(tmp_path: Path) -> None:
    # The listing caches ETags by inode; every write makes a new inode.
    store = LocalObjectStore(tmp_path)
    store.put("k", b"one")
    first = next(iter(store.list())).etag
    store.put("k", b"two")
    assert next(iter(store.list())).etag != first == store.put("k", b"one")


def test_list_refuses_a_prefix_leaving_the_root(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey):
        list(LocalObjectStore(tmp_path / "root").list("../"))


def test_only_regular_files_are_objects_to_get(tmp_path: Path) -> None:
    store = LocalObjectStore(Path("/"))
    with pytest.raises(NoSuchKey):
        store.get("dev/zero")  # a device: read_bytes would never end
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NoSuchKey):
        store.get(str(tmp_path / "pipe").lstrip("/"))
