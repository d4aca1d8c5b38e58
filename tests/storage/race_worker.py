"""Contenders for the compare-and-swap race tests, run in threads or in child processes.

Kept out of the test modules so that a spawned child imports only this and the storage code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from service.storage import LocalObjectStore, ObjectStore, PreconditionFailed


class _Barrier(Protocol):
    def wait(self, timeout: float | None = None) -> Any: ...


def contend(store: ObjectStore, key: str, rounds: int, barrier: _Barrier, name: str) -> list[int]:
    """Race the other contenders once per round; returns the rounds this contender won.

    Each round every contender reads the ETag, waits for all others to have read it too,
    then tries ``put_if_match`` from it; a second wait keeps the next read after every try.
    """
    won: list[int] = []
    for round_number in range(rounds):
        etag = store.get(key).etag
        barrier.wait(timeout=60)
        try:
            store.put_if_match(key, f"{round_number}:{name}".encode(), etag)
        except PreconditionFailed:
            pass
        else:
            won.append(round_number)
        barrier.wait(timeout=60)
    return won


def contend_in_process(
    root: str, key: str, rounds: int, barrier: _Barrier, name: str, results: Any
) -> None:
    """``contend`` on a LocalObjectStore of this process's own; puts ``(name, won)`` on results."""
    results.put((name, contend(LocalObjectStore(Path(root)), key, rounds, barrier, name)))


def increment(root: str, key: str, times: int) -> int:
    """Add one to the counter at ``key`` ``times`` times by compare-and-swap; returns retries."""
    store = LocalObjectStore(Path(root))
    retries = 0
    for _ in range(times):
        while True:
            current = store.get(key)
            try:
                store.put_if_match(key, str(int(current.data) + 1).encode(), current.etag)
                break
            except PreconditionFailed:
                retries += 1
    return retries
