"""A trainer child's stderr, passed on without TensorFlow's start-up chatter.

Every TensorFlow process prints the same lines as it starts (oneDNN's notice, "no CUDA drivers",
the CPU-instructions notice and, on a machine with no GPU, "failed call to cuInit" at level E).
They are written by the C++ runtime before its logging is set up, so no log-level variable hides
them, and on a CPU-only worker they read as errors that are not. This module drops exactly those
lines and passes everything else through unchanged, a native crash's last words included; it
keeps the last lines so that a child that dies can be described with them.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO

#: Lines every TensorFlow start prints; none says anything about a job.
START_UP_LINES = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(rb"^I\d{4} .*\] oneDNN custom operations are on\."),
    re.compile(rb"^I\d{4} .*\] Could not find cuda drivers on your machine"),
    re.compile(rb"^I\d{4} .*\] This TensorFlow binary is optimized to use available CPU"),
    re.compile(rb"^To enable the following instructions: .* rebuild TensorFlow"),
)
#: Where the machine has no NVIDIA device, CUDA's failed start is expected too.
NO_GPU_LINES = (re.compile(rb"^E\d{4} .*\] failed call to cuInit: "),)
#: How many of the last lines passed on are kept.
KEPT_LINES = 20


def machine_has_nvidia_device(dev: Path = Path("/dev")) -> bool:
    """Whether an NVIDIA driver's control device is present (a GPU may be used)."""
    return (dev / "nvidiactl").exists()


def dropped_lines(has_gpu: bool) -> tuple[re.Pattern[bytes], ...]:
    """The start-up lines to drop on a machine with or without a GPU."""
    return START_UP_LINES if has_gpu else START_UP_LINES + NO_GPU_LINES


class StderrFilter:
    """Reads a child's stderr in a thread and writes what matters to ``sink``."""

    def __init__(
        self,
        source: IO[bytes],
        sink: IO[bytes],
        dropped: Iterable[re.Pattern[bytes]],
        name: str = "trainer",
    ) -> None:
        self._dropped = tuple(dropped)
        self._sink = sink
        self._last: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        #: How many lines were dropped.
        self.dropped = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._pump, args=(source,), name=f"{name}-stderr", daemon=True
        )
        self._thread.start()

    def last_lines(self) -> list[str]:
        """The last lines passed on (decoded, without their line ends)."""
        with self._lock:
            return list(self._last)

    def join(self, timeout: float) -> None:
        """Wait until the child's stderr is closed (it exited) and everything is passed on."""
        self._thread.join(timeout)

    def _pump(self, source: IO[bytes]) -> None:
        with source:
            for line in source:
                if any(pattern.match(line) for pattern in self._dropped):
                    self.dropped += 1
                    continue
                with self._lock:
                    self._last.append(line.decode("utf-8", "replace").rstrip("\r\n"))
                try:
                    self._sink.write(line)
                    self._sink.flush()
                except (OSError, ValueError):
                    pass  # a closed sink loses the line, never the child
