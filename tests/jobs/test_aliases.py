"""Aliases changed by compare-and-swap, on moto over HTTP and on a local directory."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from service.jobs import JobStore
from service.jobs.aliases import HISTORY_LIMIT, AliasStore, AliasTarget
from service.jobs.errors import AliasChanged, InvalidAlias, NoEarlierTarget, NoSuchAlias
from service.storage.base import ObjectStore
from service.storage.local import LocalObjectStore

KEY = "models/flowers/production.json"
URI = f"s3://bucket/{KEY}"


def _target(name: str) -> AliasTarget:
    return AliasTarget(
        job_id=f"ftj_{name}",
        keras_uri=f"s3://models/{name}/model.keras",
        saved_model_uri=f"s3://models/{name}/saved_model/",
        manifest_uri=f"s3://models/{name}/manifest.json",
    )


@pytest.fixture
def store(jobs: JobStore) -> ObjectStore:
    """The job store's backend: a bucket on moto, or a local directory."""
    return jobs.store


def _jobs_of(aliases: AliasStore) -> list[str]:
    alias = aliases.read()
    return [state.target.job_id for state in (*alias.history, alias.current)]


def test_promotions_keep_the_earlier_targets_in_order(store: ObjectStore) -> None:
    aliases = AliasStore(store, KEY, URI)
    with pytest.raises(NoSuchAlias, match="No alias at"):
        aliases.read()
    first = aliases.promote(_target("v1"))
    assert first.current.version == 1 and first.history == ()
    aliases.promote(_target("v2"))
    alias = aliases.read()
    assert alias.current.target == _target("v2") and alias.current.version == 2
    assert [state.target for state in alias.history] == [_target("v1")]
    assert alias.current.change == {"action": "promote", "job_id": "ftj_v2"}
    raw = alias.to_dict()
    assert set(raw) == {"target", "version", "updated_at", "change", "history"}
    assert set(raw["target"]) == {"job_id", "keras_uri", "saved_model_uri", "manifest_uri"}


def test_promoting_the_same_model_again_changes_nothing(store: ObjectStore) -> None:
    aliases = AliasStore(store, KEY, URI)
    aliases.promote(_target("v1"))
    assert aliases.promote(_target("v1")).current.version == 1


def test_rollbacks_walk_back_through_the_promotions(store: ObjectStore) -> None:
    aliases = AliasStore(store, KEY, URI)
    for name in ("v1", "v2", "v3"):
        aliases.promote(_target(name))
    back = aliases.rollback()
    assert back.current.target == _target("v2") and back.current.version == 4
    assert back.current.change == {"action": "rollback", "restored_version": 2}
    assert aliases.rollback().current.target == _target("v1")
    with pytest.raises(NoEarlierTarget):
        aliases.rollback()
    aliases.promote(_target("v4"))
    assert aliases.rollback().current.target == _target("v1")  # v4 undone, back to v1
    assert _jobs_of(aliases) == [f"ftj_{n}" for n in ("v1", "v2", "v3", "v2", "v1", "v4", "v1")]


def test_a_rollback_against_a_version_that_moved_is_refused(store: ObjectStore) -> None:
    aliases = AliasStore(store, KEY, URI)
    aliases.promote(_target("v1"))
    aliases.promote(_target("v2"))
    with pytest.raises(AliasChanged, match="version 2, not 1"):
        aliases.rollback(expected_version=1)
    assert aliases.rollback(expected_version=2).current.target == _target("v1")


def test_history_keeps_the_newest_states(tmp_path: Path) -> None:
    aliases = AliasStore(LocalObjectStore(tmp_path), KEY, URI)
    for index in range(HISTORY_LIMIT + 5):
        aliases.promote(_target(f"v{index}"))
    alias = aliases.read()
    assert len(alias.history) == HISTORY_LIMIT
    assert alias.history[0].version == 5 and alias.current.version == HISTORY_LIMIT + 5


def test_an_object_that_is_not_an_alias_is_named(store: ObjectStore) -> None:
    store.put(KEY, b'{"target": {"job_id": 3}, "version": 1}')
    aliases = AliasStore(store, KEY, URI)
    with pytest.raises(InvalidAlias, match=f"{URI} is not an alias object"):
        aliases.read()
    with pytest.raises(InvalidAlias):
        aliases.promote(_target("v1"))


def test_concurrent_promotions_all_land_in_the_history(store: ObjectStore) -> None:
    names = [f"c{index}" for index in range(8)]
    start = threading.Barrier(len(names))
    failures: list[BaseException] = []

    def promote(name: str) -> None:
        # One AliasStore per thread, as separate workers would have.
        aliases = AliasStore(store, KEY, URI)
        start.wait()
        try:
            aliases.promote(_target(name))
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=promote, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    alias = AliasStore(store, KEY, URI).read()
    states = (*alias.history, alias.current)
    assert sorted(state.target.job_id for state in states) == sorted(f"ftj_{n}" for n in names)
    assert [state.version for state in states] == list(range(1, len(names) + 1))
