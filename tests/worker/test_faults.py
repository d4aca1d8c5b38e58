"""Evidence of a fault, from the real kernel: OOM kills counted by a memory cgroup, ENOSPC."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from service.worker.faults import OomKillCounter, disk_full, is_disk_full, oom_kill_files
from tests.helpers.cgroups import MemoryCgroup, memory_cgroup
from tests.helpers.small_disk import small_tmpfs

MiB = 1024**2


def _run_inside(group: MemoryCgroup, code: str) -> subprocess.Popen[bytes]:
    """``python -c code`` started inside ``group`` (moved in before it execs)."""
    return subprocess.Popen(
        ["/bin/sh", "-c", f'echo $$ > {group.path / "cgroup.procs"}; exec "$0" -c "$1"',
         sys.executable, code]
    )  # fmt: skip


def test_this_process_has_a_file_that_counts_oom_kills() -> None:
    files = oom_kill_files()
    if not files:
        pytest.skip("no cgroup file system here")
    assert OomKillCounter(files).read() is not None


def test_a_kernel_oom_kill_raises_the_count_and_a_kill_from_outside_does_not() -> None:
    with memory_cgroup() as group:
        group.limit(96 * MiB)
        counter = OomKillCounter([group.oom_file])
        before = counter.read()
        hog = _run_inside(group, "x = bytearray(400 * 1024 * 1024)")
        assert hog.wait(60) == -signal.SIGKILL
        after_oom = counter.read()
        assert OomKillCounter.rose(before, after_oom)

        sleeper = _run_inside(group, "import time; time.sleep(60)")
        sleeper.send_signal(signal.SIGKILL)  # what an operator or a runtime might do
        assert sleeper.wait(60) == -signal.SIGKILL
        assert not OomKillCounter.rose(after_oom, counter.read())


def test_no_space_left_on_a_real_small_filesystem_is_disk_full(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "work", 1 * MiB) as work:
        with pytest.raises(OSError) as caught:
            (work / "big").write_bytes(b"\0" * 2 * MiB)
        assert is_disk_full(caught.value)
        wrapped = RuntimeError("writing the checkpoint failed")
        wrapped.__cause__ = caught.value
        assert is_disk_full(wrapped)
        assert not is_disk_full(MemoryError())
        failure = disk_full(work, "downloading dataset.train", needed_bytes=3 * MiB)
    assert failure.code == "disk_full"
    assert str(work) in failure.message and "FINETUNE_WORK_DIR" in failure.message
    assert "free of 1.0 MiB" in failure.message and "needs 3.0 MiB" in failure.message
