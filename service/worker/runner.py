"""Runs the trainer in a child process started with ``spawn`` and watches over it.

Every job runs in a child of its own, which exits after that one job. A TrainerPool can start
the next job's child ahead of time (a warm trainer): it imports TensorFlow and the trainer while
the worker waits for work or stages inputs, so that a job does not pay for that import (seconds
on a CPU) before its first step. The warm child is started with ``spawn`` as well, without the
storage credentials in its environment (isolation.py), and is replaced after every job.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

from service.contract.request import TrainingOutcome, TrainingRequest
from service.worker import child_entry
from service.worker.errors import JobFailure
from service.worker.isolation import spawning_without_secrets

log = logging.getLogger(__name__)

#: Called with each message of the child (phase, info, epoch); returns nothing.
MessageHandler = Callable[[dict[str, Any]], None]
#: Called about once a second while the child runs; raises to stop it.
Watchdog = Callable[[], None]

_STOP_GRACE_SECONDS = 5.0


def stop_process(process: multiprocessing.process.BaseProcess) -> None:
    """Terminate the child, then kill it where it does not exit in time."""
    if not process.is_alive():
        return
    process.terminate()
    process.join(_STOP_GRACE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


class TrainerProcess:
    """A spawned child that runs one request (child_entry.serve_one).

    Attributes:
        process: The child process (started by the constructor).
        requests: Where the one request goes.
        messages: The trainer's messages.
        ready: Set by the child once TensorFlow and the trainer are imported.
    """

    def __init__(self, name: str = "trainer") -> None:
        with spawning_without_secrets() as context:
            self.requests: Any = context.Queue()
            self.messages: Any = context.Queue()
            self.ready: Any = context.Event()
            self.process = context.Process(
                target=child_entry.serve_one,
                args=(self.requests, self.messages, self.ready),
                name=name,
                daemon=True,
            )
            self.process.start()

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self.process.pid

    def is_usable(self) -> bool:
        """Alive and not yet given a request."""
        return self.process.is_alive()

    def submit(self, request: TrainingRequest) -> None:
        """Hand the child its one request (it starts as soon as its imports are done)."""
        self.requests.put(request.to_dict())

    def supervise(
        self, request: TrainingRequest, on_message: MessageHandler, watchdog: Watchdog
    ) -> TrainingOutcome:
        """Follow the submitted request to its result; the child is gone after.

        Raises:
            JobFailure: The trainer reported an error, or the child died.
            Exception: Whatever ``watchdog`` or ``on_message`` raised (the child is stopped).
        """
        try:
            return _supervise(self.process, self.messages, request, on_message, watchdog)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the child (where it still runs) and release its queues."""
        stop_process(self.process)
        # The request is tiny and either read or moot now: never wait on its feeder thread.
        self.requests.cancel_join_thread()
        for channel in (self.requests, self.messages):
            channel.close()
            channel.join_thread()


class TrainerPool:
    """Keeps one warm trainer child ready for the next job, where ``warm`` is on.

    ``prepare`` starts the spare (the worker calls it whenever it looks for work); ``run``
    takes the spare where there is one and otherwise starts a child then and there. A child
    runs one job and is replaced: with ``warm`` on, the replacement starts as soon as a job has
    its child, so that it has imported TensorFlow by the time the next job comes, also when jobs
    come back to back. Nothing of one job (memory, state of TensorFlow) reaches the next.
    """

    def __init__(self, warm: bool = True) -> None:
        self.warm = warm
        self._spare: TrainerProcess | None = None
        self.last_pid: int | None = None
        self.last_was_warm = False

    @property
    def spare(self) -> TrainerProcess | None:
        """The child waiting for the next job, if any."""
        return self._spare

    def prepare(self) -> None:
        """Start a spare child where ``warm`` is on and none is waiting."""
        if not self.warm:
            return
        if self._spare is not None and not self._spare.is_usable():
            log.warning("the warm trainer process exited (code %s)", self._spare.process.exitcode)
            self._spare.close()
            self._spare = None
        if self._spare is None:
            self._spare = TrainerProcess(name="trainer-warm")
            log.info("warm trainer process %s started", self._spare.pid)

    def run(
        self, request: TrainingRequest, on_message: MessageHandler, watchdog: Watchdog
    ) -> TrainingOutcome:
        """Train ``request`` in the spare child, or in a fresh one; see run_training."""
        trainer, self._spare = self._spare, None
        self.last_was_warm = trainer is not None and trainer.is_usable()
        if trainer is None or not self.last_was_warm:
            if trainer is not None:
                trainer.close()
            trainer = TrainerProcess(name=f"trainer-{request.job_id}")
        self.last_pid = trainer.pid
        log.info(
            "trainer process %s (%s) runs job %s",
            trainer.pid,
            "warm" if self.last_was_warm else "started now",
            request.job_id,
        )
        trainer.submit(request)
        # The next job's child imports TensorFlow while this one trains (an idle process of a
        # few hundred MB, and a few CPU-seconds once per job).
        self.prepare()
        return trainer.supervise(request, on_message, watchdog)

    def close(self) -> None:
        """Stop the spare, if any."""
        if self._spare is not None:
            self._spare.close()
            self._spare = None


def run_training(
    request: TrainingRequest, on_message: MessageHandler, watchdog: Watchdog
) -> TrainingOutcome:
    """Train in a fresh spawned process (none kept warm); return its outcome or raise JobFailure.

    The process starts without storage credentials in its environment (see isolation.py).

    Exceptions raised by ``watchdog`` or ``on_message`` stop the child and propagate.
    """
    return TrainerPool(warm=False).run(request, on_message, watchdog)


def _supervise(
    process: multiprocessing.process.BaseProcess,
    messages: Any,
    request: TrainingRequest,
    on_message: MessageHandler,
    watchdog: Watchdog,
) -> TrainingOutcome:
    while True:
        watchdog()
        try:
            message = messages.get(timeout=1.0)
        except queue.Empty:
            if not process.is_alive():
                # A last look: the child may have put its result just before exiting.
                try:
                    message = messages.get(timeout=1.0)
                except queue.Empty:
                    raise _died(process.exitcode) from None
            else:
                continue
        kind = message.get("type")
        if kind == "result":
            return TrainingOutcome.from_dict(message["outcome"])
        if kind == "error":
            log.error(
                "job %s failed in the trainer: %s\n%s",
                request.job_id,
                message.get("message"),
                message.get("traceback", ""),
            )
            raise JobFailure(message.get("code", "internal"), message["message"])
        on_message(message)


def _died(exitcode: int | None) -> JobFailure:
    if exitcode is not None and exitcode < 0 and -exitcode == 9:
        return JobFailure(
            "out_of_memory",
            "The training process was killed (likely out of memory). "
            "Try a smaller training.batch_size or dataset.image_size.",
        )
    return JobFailure(
        "internal", f"The training process exited unexpectedly (exit code {exitcode})."
    )
