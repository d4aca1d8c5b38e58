"""Reports and checkpoint writes off the training thread, in the order they were made.

Writing a checkpoint took 0.6-2.6 s per epoch on the benchmark CPU (bench/RESULTS.md), longer
than some epochs: done inline, the next epoch waited for it. Callbacks now take a snapshot of
the weights (milliseconds) and hand the writing to one background thread, which also sends every
report. One thread and one queue keep the order: the worker still sees the checkpoint after
epoch k before the progress message of epoch k.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from service.contract.messages import ProgressMessage

log = logging.getLogger(__name__)

#: Where the trainer's progress messages go (the child's pipe to its parent).
Report = Callable[[ProgressMessage], None]
Task = Callable[[], None]


class BackgroundReporter:
    """Runs ``report`` calls and other tasks on one thread, first in, first out.

    An error in a task is raised again by the next ``submit``, ``report`` or ``close`` call, so
    a failed checkpoint write fails the training run rather than passing unseen.

    Args:
        report: Where messages go (the child's pipe to its parent).
    """

    def __init__(self, report: Report) -> None:
        self._report = report
        self._tasks: queue.Queue[Task | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="trainer-reporter", daemon=True)
        self._thread.start()

    def direct_report(self, message: ProgressMessage) -> None:
        """Send ``message`` now (for tasks already running on this reporter's thread)."""
        self._report(message)

    def report(self, message: ProgressMessage) -> None:
        """Send ``message`` after everything submitted before it."""
        self.submit(lambda: self._report(message))

    def submit(self, task: Task) -> None:
        """Run ``task`` after everything submitted before it."""
        self._raise_error()
        self._tasks.put(task)

    def drain(self) -> None:
        """Wait until everything submitted so far has run; raise a task's error."""
        self._tasks.join()
        self._raise_error()

    def close(self, raise_errors: bool = True) -> None:
        """Run what is queued, then stop the thread."""
        self._tasks.put(None)
        self._thread.join()
        if raise_errors:
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                if task is None:
                    return
                if self._error is None:  # after a failure, later tasks are dropped
                    task()
            except BaseException as exc:
                log.exception("background report or checkpoint write failed")
                self._error = exc
            finally:
                self._tasks.task_done()
