"""A memory cgroup of a test's own with a memory limit, for real out-of-memory kills.

cgroup v1 (a ``memory`` hierarchy) or v2 (where the current cgroup may get children with the
memory controller); root is needed to create one. ``memory_cgroup`` skips the test, saying
why, where neither works.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryCgroup:
    """One cgroup directory, its limit file and the file that counts its OOM kills."""

    path: Path
    limit_file: Path
    oom_file: Path
    usage_file: Path

    def limit(self, limit_bytes: int) -> None:
        """Set the memory limit (bytes)."""
        self.limit_file.write_text(str(limit_bytes))

    def add(self, pid: int) -> None:
        """Move process ``pid`` in (its later children are born inside)."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def usage(self) -> int:
        """Bytes in use now."""
        return int(self.usage_file.read_text().split()[0])

    def oom_kills(self) -> int:
        """The kernel's count of OOM kills in this cgroup."""
        for line in self.oom_file.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        raise AssertionError(f"no oom_kill line in {self.oom_file}")


def _own(controllers: str) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if names == controllers or controllers in names.split(","):
            return path.lstrip("/")
    return None


@contextlib.contextmanager
def memory_cgroup() -> Iterator[MemoryCgroup]:
    """A fresh memory cgroup below this process's, removed afterwards (its processes gone)."""
    if os.geteuid() != 0:
        pytest.skip("creating a memory cgroup needs root")
    name = f"finetune-test-{uuid.uuid4().hex[:8]}"
    v1 = _own("memory")
    if v1 is not None and (ROOT / "memory").is_dir():
        path = ROOT / "memory" / v1 / name
        path.mkdir()
        group = MemoryCgroup(
            path,
            path / "memory.limit_in_bytes",
            path / "memory.oom_control",
            path / "memory.usage_in_bytes",
        )
    else:
        v2 = _own("")
        base = ROOT / (v2 or "")
        if v2 is None or "memory" not in (base / "cgroup.controllers").read_text().split():
            pytest.skip("no memory cgroup controller here (cgroup v1 memory or v2 memory)")
        path = base / name
        path.mkdir()
        if not (path / "memory.max").exists():
            path.rmdir()
            pytest.skip(f"the memory controller is not enabled for children of {base}")
        group = MemoryCgroup(
            path, path / "memory.max", path / "memory.events", path / "memory.current"
        )
    try:
        yield group
    finally:
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)  # its last processes are still exiting
