"""Services (config, storage, job store) on a local directory, and a worker, for tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.config import Config
from service.context import Services, build_services
from service.worker import Worker


def local_services(root: Path, **config: Any) -> Services:
    """Job state in ``root/state``, scratch in ``root/work``; ``config`` overrides Config fields."""
    settings: dict[str, Any] = {"allow_local_storage": True, **config}
    return build_services(
        Config(state_uri=f"file://{root / 'state'}", work_dir=root / "work", **settings)
    )


@contextmanager
def running_worker(services: Services, jobs: bool = True) -> Iterator[Worker]:
    """A real Worker working in a thread until the block ends.

    Args:
        services: What it works on.
        jobs: False runs its dry-run thread alone: it answers dry runs and leaves queued jobs be.
    """
    worker = Worker(services)
    target = worker.run_forever if jobs else worker.dry_runs.run_forever
    thread = threading.Thread(target=target, name="test-worker")
    thread.start()
    try:
        yield worker
    finally:
        worker.stopping.set()
        thread.join(120)
        worker.trainers.close()
