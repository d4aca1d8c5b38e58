"""Files and folders in and out of a store: download_file, upload_file, and whole folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from service.storage import NoSuchKey, ObjectStore, S3ObjectStore, StorageError


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by its relative path, with its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def leftovers(directory: Path) -> list[str]:
    """Temporary files left behind in ``directory``."""
    return [name for name in os.listdir(directory) if name.startswith(".tmp-")]


def test_download_file_replaces_the_target_and_leaves_no_temporary_file(
    store: ObjectStore, tmp_path: Path
) -> None:
    store.put("models/base.keras", b"new weights")
    target = tmp_path / "out" / "base.keras"
    target.parent.mkdir()
    target.write_bytes(b"old weights")

    store.download_file("models/base.keras", target)

    assert target.read_bytes() == b"new weights"
    assert leftovers(target.parent) == []


def test_download_file_of_a_missing_key_leaves_the_target_alone(
    store: ObjectStore, tmp_path: Path
) -> None:
    target = tmp_path / "kept.bin"
    target.write_bytes(b"kept")

    with pytest.raises(NoSuchKey):
        store.download_file("missing.bin", target)

    assert target.read_bytes() == b"kept"
    assert leftovers(tmp_path) == []


def test_upload_file_then_get(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(300_000))

    store.upload_file(source, "out/weights.bin")

    assert store.get("out/weights.bin").data == source.read_bytes()


def test_upload_dir_then_download_prefix_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "saved_model"
    files = {
        "saved_model.pb": os.urandom(2048),
        "fingerprint.pb": b"",
        "variables/variables.index": b"index",
        "variables/variables.data-00000-of-00001": os.urandom(100_000),
        "assets/deeper/still/labels.txt": b"chat\nchien\n",
    }
    for relative, data in files.items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(data)
    # A sibling whose name extends the prefix must not come along.
    store.put("runs/job-1/export10/other.txt", b"not mine")

    uploaded = store.upload_dir(source, "runs/job-1/export1", max_workers=4)
    assert uploaded == sorted(f"runs/job-1/export1/{relative}" for relative in files)

    destination = tmp_path / "staged"
    downloaded = store.download_prefix("runs/job-1/export1", destination, max_workers=4)

    assert tree(destination) == files
    assert [info.key for info in downloaded] == uploaded
    assert {info.key: info.size for info in downloaded} == {
        f"runs/job-1/export1/{relative}": len(data) for relative, data in files.items()
    }
    assert not list(destination.rglob(".tmp-*"))


def test_download_prefix_of_an_empty_prefix_creates_an_empty_folder(
    store: ObjectStore, tmp_path: Path
) -> None:
    assert store.download_prefix("nothing/", tmp_path / "empty") == []
    assert (tmp_path / "empty").is_dir()


def test_upload_dir_refuses_symbolic_links(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "ok.txt").write_bytes(b"ok")
    (source / "secret").symlink_to("/etc/hostname")

    with pytest.raises(StorageError, match="symbolic link"):
        store.upload_dir(source, "out")
    assert list(store.list("out/")) == []


def test_download_prefix_skips_folder_markers(s3_client: Any, bucket: str, tmp_path: Path) -> None:
    # Consoles and some tools create "folder" objects whose key ends in '/'; only S3 has them.
    store = S3ObjectStore(s3_client, bucket)
    store.put("data/", b"")
    store.put("data/images/", b"")
    store.put("data/images/cat.png", b"png")

    downloaded = store.download_prefix("data/", tmp_path / "d")

    assert [info.key for info in downloaded] == ["data/images/cat.png"]
    assert tree(tmp_path / "d") == {"images/cat.png": b"png"}


@pytest.mark.parametrize("bad_key", ["data/../../escaped.txt", "data//etc/passwd-copy"])
def test_download_prefix_refuses_keys_that_escape_the_destination(
    s3_client: Any, bucket: str, tmp_path: Path, bad_key: str
) -> None:
    # S3 keys are arbitrary strings; a hostile bucket may hold '..' or '//' in them.
    store = S3ObjectStore(s3_client, bucket)
    store.put("data/fine.txt", b"fine")
    store.put(bad_key, b"evil")
    assert bad_key in [info.key for info in store.list("data/")]

    destination = tmp_path / "inner" / "dest"
    with pytest.raises(StorageError, match="refusing to download"):
        store.download_prefix("data/", destination)

    # Every key is checked before anything is written.
    assert tree(tmp_path) == {}
