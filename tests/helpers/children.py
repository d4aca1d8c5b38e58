"""Finding the trainer children of a process through /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

from service.worker.child_runner import CHILD_MODULE


def trainer_pids(parent: int | None = None) -> list[int]:
    """Live (not zombie) ``python -m service.trainer`` processes whose parent is ``parent``.

    Args:
        parent: A process id; None: this process.
    """
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # it ended meanwhile
            continue
        state, ppid = stat.rsplit(") ", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z" and CHILD_MODULE.encode() in argv:
            found.append(int(entry.name))
    return sorted(found)


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[1][0] != "Z"
