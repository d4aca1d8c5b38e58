"""Naming what went wrong for what it is: memory, a full disk, or a kill nobody explains.

A trainer child that dies by SIGKILL was not necessarily out of memory: an operator, a
container runtime or a test may have killed it. Only evidence says memory: the kernel's count
of out-of-memory kills in this process's memory cgroup (the trainer lives in the same cgroup)
rising across the child's life, or the allocator's own error inside the child (TensorFlow's
ResourceExhaustedError, Python's MemoryError), which the child reports itself.

A full work disk (errno ENOSPC, "No space left on device") is its own fault, ``disk_full``:
halving the batch size cannot help it, more scratch space can.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.contract.faults import is_disk_full
from service.worker.errors import JobFailure

__all__ = [
    "NoSpaceForDownload",
    "OomKillCounter",
    "disk_full",
    "downloading",
    "is_disk_full",
    "needed_bytes",
    "oom_kill_files",
]

#: Where the cgroup file systems are mounted (cgroup v2, or v1 with its controllers).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_lines(proc_cgroup: Path) -> Iterator[tuple[str, str]]:
    """``(controllers, path)`` of each line of ``/proc/self/cgroup``."""
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        yield controllers, path.lstrip("/")


def oom_kill_files(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT
) -> list[Path]:
    """The files that may count this process's cgroup's OOM kills, most specific first.

    cgroup v2: ``memory.events`` of the process's cgroup (``0::/path``), at the root of the
    mount or of a hybrid mount's ``unified/``. cgroup v1: ``memory.oom_control`` of its memory
    cgroup. Each also at the mount's root, which is the process's own cgroup inside a
    container that has a cgroup namespace.
    """
    candidates: list[Path] = []
    for controllers, path in _cgroup_lines(proc_cgroup):
        if controllers == "":
            for base in (root, root / "unified"):
                candidates += [base / path / "memory.events", base / "memory.events"]
        elif "memory" in controllers.split(","):
            base = root / "memory"
            candidates += [base / path / "memory.oom_control", base / "memory.oom_control"]
    unique: list[Path] = []
    for candidate in candidates:
        if candidate not in unique:
            unique.append(candidate)
    return unique


class OomKillCounter:
    """Reads the kernel's count of out-of-memory kills in this process's memory cgroup.

    Args:
        files: Where to look (``oom_kill_files()``); the first that has an ``oom_kill`` line
            is used from then on.
    """

    def __init__(self, files: list[Path] | None = None) -> None:
        self._files = oom_kill_files() if files is None else files

    def read(self) -> int | None:
        """The count now, or None where no cgroup file tells it (not Linux, no memory cgroup)."""
        for path in self._files:
            try:
                lines = path.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    self._files = [path]
                    return int(value)
        return None

    @staticmethod
    def rose(before: int | None, after: int | None) -> bool:
        """Whether the count rose between two readings (False where either is unknown)."""
        return before is not None and after is not None and after > before


class NoSpaceForDownload(OSError):
    """The disk filled while staging a download whose size is known (ENOSPC, like its cause).

    Attributes:
        needed_bytes: The bytes of the whole download (every object listed for it).
    """

    def __init__(self, needed: int, cause: BaseException) -> None:
        super().__init__(errno.ENOSPC, f"No space left on device for {needed} bytes: {cause}")
        self.needed_bytes = needed


@contextmanager
def downloading(needed: int) -> Iterator[None]:
    """Around a download of ``needed`` bytes: a full disk inside says how much was needed."""
    try:
        yield
    except NoSpaceForDownload:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise NoSpaceForDownload(needed, exc) from exc
        raise


def needed_bytes(exc: BaseException) -> int | None:
    """What a full disk's download needed, where ``exc`` (or its cause) says; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NoSpaceForDownload):
            return current.needed_bytes
        current = current.__cause__ or current.__context__
    return None


def disk_full(work_dir: Path, during: str, needed_bytes: int | None = None) -> JobFailure:
    """The ``disk_full`` failure: which directory, how much is free, how much was needed.

    Args:
        work_dir: The worker's scratch directory (``FINETUNE_WORK_DIR``).
        during: What was being written (``"downloading dataset.train"``, ``"training"``).
        needed_bytes: How much the step needed in all, where known.
    """
    try:
        usage = shutil.disk_usage(work_dir)
        free = f"{_size(usage.free)} free of {_size(usage.total)}"
    except OSError:
        free = "free space unknown"
    needed = f"; the step needs {_size(needed_bytes)}" if needed_bytes is not None else ""
    return JobFailure(
        "disk_full",
        f"The worker's work directory {work_dir} (FINETUNE_WORK_DIR) ran out of space while "
        f"{during} ({free}{needed}). This is not the job's fault: run it on a worker with more "
        "scratch space (a larger volume for FINETUNE_WORK_DIR), or make the dataset or the "
        "model smaller.",
    )


def _size(count: int) -> str:
    return f"{count / 1024**2:.1f} MiB"
