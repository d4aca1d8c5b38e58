"""The ObjectStore contract, checked on moto over HTTP and on the local backend alike."""

from __future__ import annotations

import hashlib

import pytest

from service.storage import NoSuchKey, ObjectStore, PreconditionFailed, StoredObject


def md5(data: bytes) -> str:
    """The ETag S3 gives a single-part object."""
    return hashlib.md5(data).hexdigest()


def test_put_then_get_returns_bytes_and_unquoted_md5_etag(store: ObjectStore) -> None:
    etag = store.put("jobs/a.json", b'{"v": 1}')

    stored = store.get("jobs/a.json")

    assert stored.data == b'{"v": 1}'
    assert etag == stored.etag == md5(b'{"v": 1}')
    assert '"' not in etag


def test_identical_bytes_keep_the_etag(store: ObjectStore) -> None:
    first = store.put("k", b"same")
    assert store.put("k", b"same") == first
    assert store.put("k", b"other") != first


def test_get_missing_key_raises_no_such_key(store: ObjectStore) -> None:
    with pytest.raises(NoSuchKey) as caught:
        store.get("nothing/here")
    assert caught.value.key == "nothing/here"


def test_exists(store: ObjectStore) -> None:
    store.put("dir/file", b"x")
    assert store.exists("dir/file")
    assert not store.exists("dir/other")
    assert not store.exists("dir/fil")


def test_empty_object(store: ObjectStore) -> None:
    etag = store.put("empty", b"")
    assert store.get("empty").data == b""
    assert etag == md5(b"")


def test_put_if_absent_creates_once(store: ObjectStore) -> None:
    etag = store.put_if_absent("jobs/1.json", b"first")

    with pytest.raises(PreconditionFailed):
        store.put_if_absent("jobs/1.json", b"second")

    assert store.get("jobs/1.json") == StoredObject(data=b"first", etag=etag)


def test_put_if_match_refuses_a_stale_etag_and_accepts_the_current_one(
    store: ObjectStore,
) -> None:
    stale = store.put("jobs/2.json", b"v1")
    current = store.put("jobs/2.json", b"v2")

    with pytest.raises(PreconditionFailed):
        store.put_if_match("jobs/2.json", b"v3 from stale", stale)
    assert store.get("jobs/2.json").data == b"v2"

    new = store.put_if_match("jobs/2.json", b"v3", current)
    assert new == md5(b"v3")
    assert store.get("jobs/2.json").etag == new


def test_put_if_match_accepts_a_quoted_etag(store: ObjectStore) -> None:
    etag = store.put("k", b"v1")
    assert store.put_if_match("k", b"v2", f'"{etag}"') == md5(b"v2")


def test_put_if_match_on_a_missing_key_is_a_lost_race(store: ObjectStore) -> None:
    with pytest.raises(PreconditionFailed):
        store.put_if_match("never/written", b"x", md5(b"x"))
    assert not store.exists("never/written")


def test_put_if_match_after_delete_is_a_lost_race(store: ObjectStore) -> None:
    etag = store.put("k", b"v1")
    store.delete("k")
    with pytest.raises(PreconditionFailed):
        store.put_if_match("k", b"v2", etag)


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("k", b"v")
    store.delete("k")
    store.delete("k")
    assert not store.exists("k")
    store.put_if_absent("k", b"again")  # a deleted key can be created anew


def test_deleting_a_folders_name_deletes_nothing(store: ObjectStore) -> None:
    # ``saved_model`` names a folder of objects, no object: nothing to delete, no error.
    store.put("out/saved_model/saved_model.pb", b"graph")
    store.delete("out/saved_model")
    assert store.get("out/saved_model/saved_model.pb").data == b"graph"


def test_list_in_utf8_key_order_with_prefix_and_start_after(store: ObjectStore) -> None:
    # '-' (0x2d) < '/' (0x2f) < '0' (0x30): plain key order, not a directory walk's order.
    keys = ["a/b", "a-c", "a0", "a/a/z", "b", "a/é", "a/z"]
    for key in keys:
        store.put(key, key.encode())

    listed = list(store.list())
    assert [info.key for info in listed] == sorted(keys, key=lambda key: key.encode())
    assert all(info.size == len(info.key.encode()) for info in listed)
    assert all(info.etag == md5(info.key.encode()) for info in listed)

    assert [info.key for info in store.list("a/")] == ["a/a/z", "a/b", "a/z", "a/é"]
    assert [info.key for info in store.list("a/", start_after="a/b")] == ["a/z", "a/é"]
    assert [info.key for info in store.list("a")] == ["a-c", "a/a/z", "a/b", "a/z", "a/é", "a0"]
    assert [info.key for info in store.list(start_after="a0")] == ["b"]
    assert list(store.list("nothing/")) == []


def test_find_any_stops_at_the_first_match_and_gives_up_past_its_limit(store: ObjectStore) -> None:
    for index in range(60):  # more than one listing page of find_any on S3
        store.put(f"d/{index:03d}.txt", b"x")
    store.put("d/zz.png", b"x")
    assert store.find_any("d/") is True
    assert store.find_any("d/", lambda key: key.endswith(".png")) is True
    assert store.find_any("d/", lambda key: key.endswith(".png"), limit=10) is None
    assert store.find_any("d/", lambda key: key.endswith(".jpg")) is False
    assert store.find_any("e/") is False
