"""Compare-and-swap under contention: of writers racing from one ETag, exactly one wins."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.storage import LocalObjectStore, ObjectStore, PreconditionFailed
from tests.storage.race_worker import contend, contend_in_process, increment

THREADS = 20
ROUNDS = 20


def assert_one_winner_per_round(wins: dict[str, list[int]], rounds: int) -> None:
    """Every round has exactly one winner."""
    per_round = Counter(round_number for won in wins.values() for round_number in won)
    assert [per_round[round_number] for round_number in range(rounds)] == [1] * rounds, per_round


def test_put_if_match_threads_one_winner_per_round(store: ObjectStore) -> None:
    store.put("race/record.json", b"start")
    barrier = threading.Barrier(THREADS)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = {
            f"t{index}": pool.submit(
                contend, store, "race/record.json", ROUNDS, barrier, f"t{index}"
            )
            for index in range(THREADS)
        }
        wins = {name: future.result(timeout=120) for name, future in futures.items()}

    assert_one_winner_per_round(wins, ROUNDS)
    last_winner = next(name for name, won in wins.items() if ROUNDS - 1 in won)
    assert store.get("race/record.json").data == f"{ROUNDS - 1}:{last_winner}".encode()


def test_put_if_absent_threads_one_creator(store: ObjectStore) -> None:
    barrier = threading.Barrier(THREADS)

    def create(index: int) -> bool:
        barrier.wait(timeout=60)
        try:
            store.put_if_absent("race/new.json", f"{index}".encode())
        except PreconditionFailed:
            return False
        return True

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        created = list(pool.map(create, range(THREADS)))

    assert created.count(True) == 1
    assert store.get("race/new.json").data == str(created.index(True)).encode()


@pytest.mark.slow
def test_local_put_if_match_across_processes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    LocalObjectStore(root).put("race/record.json", b"start")
    # spawn, not fork: the test process has threads (moto clients, pools) that fork would copy.
    context = multiprocessing.get_context("spawn")
    processes = 4
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=contend_in_process,
            args=(str(root), "race/record.json", ROUNDS, barrier, f"p{index}", results),
        )
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    wins = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    assert_one_winner_per_round(wins, ROUNDS)


@pytest.mark.slow
def test_local_counter_loses_no_increment_across_processes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    LocalObjectStore(root).put("counter", b"0")
    context = multiprocessing.get_context("spawn")

    with context.Pool(4) as pool:
        retries = pool.starmap(increment, [(str(root), "counter", 25)] * 4)

    assert LocalObjectStore(root).get("counter").data == b"100"
    assert not list(root.rglob(".tmp-*"))
    print(f"compare-and-swap retries under contention: {sum(retries)}")
