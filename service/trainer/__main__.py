"""``python -m service.trainer <parent pid> [<logical devices>]``: one trainer child's process.

The worker's child runner (service.worker.child_runner) starts this with an environment of its
own choosing (no credentials) and speaks to it over two pipes: stdin brings one request, as one
line of JSON (``TrainingRequest.to_dict()``); stdout carries the typed messages of
service.contract.messages, one JSON line each. What else the process prints (Python or native
code) goes to stderr, so nothing can garble the messages.

In order: die with the parent (``PR_SET_PDEATHSIG``), and exit at once where the parent is
already gone; import TensorFlow, split the CPU into ``<logical devices>`` devices where that is
given and no GPU is visible (before any TensorFlow op: service.trainer.distribution), and
import the trainer (a warm child does this before its job comes); send ``Ready`` with the
devices it holds; read the request; run it in its mode (``service.trainer.child.run_request``),
which ends with exactly one final message. End of input instead of a request: the parent let
this child go unused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

from service.contract.messages import ChildMessage, Ready, to_line
from service.contract.request import TrainingRequest

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """Run the child's life; returns the process's exit status."""
    if len(argv) not in (2, 3) or not all(arg.isdigit() for arg in argv[1:]):
        print("usage: python -m service.trainer <parent pid> [<logical devices>]", file=sys.stderr)
        return 2
    die_with_parent(int(argv[1]))
    send = _sender(_take_stdout())
    send(_warm_up(int(argv[2]) if len(argv) == 3 else None))
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0
    from service.trainer.child import failure, run_request

    try:
        request = TrainingRequest.from_dict(json.loads(line))
    except Exception as exc:  # the process boundary: a request that is not one is reported
        send(failure(exc))
        return 1
    run_request(request, send)
    return 0


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` ends; exit if it already has.

    The check after the ``prctl`` closes the race where the parent died before it: the signal
    is then never sent, but the parent's pid is no longer this process's parent.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            print(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}", file=sys.stderr)
    if os.getppid() != parent:
        os._exit(0)


def _take_stdout() -> BinaryIO:
    """The message channel: the original stdout; fd 1 then points at stderr for everyone else."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return channel


def _sender(channel: BinaryIO) -> Callable[[ChildMessage], None]:
    # Checkpoints are reported from a background thread as well: one line at a time.
    lock = threading.Lock()

    def send(message: ChildMessage) -> None:
        with lock:
            channel.write(to_line(message))
            channel.flush()

    return send


def _warm_up(logical_devices: int | None) -> Ready:
    """Imports TensorFlow and the trainer; Ready with the devices this child holds."""
    # A failed import is not fatal here: run_request imports it again and reports the failure
    # as the run's own.
    try:
        from service.trainer.distribution import configure_devices

        held = configure_devices(logical_devices)
        import keras  # noqa: F401  (loads the backend: TensorFlow)

        import service.trainer.child  # noqa: F401
    except Exception as exc:
        print(f"the trainer's warm-up failed: {exc!r}", file=sys.stderr)
        return Ready()
    return Ready(devices=held.count, device_kind=held.kind)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
