"""Runs trainer children (a job's training, a dry run's inspection) and watches over them.

A child is ``python -m service.trainer <our pid>``, started with an environment built from an
allow-list (``child_environment``: no credentials, no tokens; this process's own ``os.environ``
is never changed), its stdin and stdout as pipes: the request goes in as one JSON line, typed
messages (service.contract.messages) come back one JSON line each. The child asks the kernel to
kill it when the thread that started it ends (``PR_SET_PDEATHSIG``), so a worker killed with
SIGKILL leaves no trainer behind; start children only from long-lived threads.

A child that dies without a final message is judged by the evidence (``died``): SIGKILL is out
of memory only where the memory cgroup's count of OOM kills rose between its request and its
end; otherwise it is ``killed``, from outside the service.

Every child runs one request and exits. A TrainerPool can start the next one ahead of time (a
warm trainer): it imports TensorFlow while the worker waits for work or stages inputs, so that a
run does not pay for that import (seconds on a CPU) before its first step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import service
from service.contract.messages import (
    ChildMessage,
    Failed,
    FinalMessage,
    InspectionFinished,
    MessageError,
    ProgressMessage,
    Ready,
    TrainingFinished,
    from_line,
)
from service.contract.request import TrainingOutcome, TrainingRequest
from service.worker.child_stderr import StderrFilter, dropped_lines, machine_has_nvidia_device
from service.worker.errors import JobFailure
from service.worker.faults import OomKillCounter
from service.worker.native_crash import ChildWhereabouts, TrainerCrashed, crash_signal

log = logging.getLogger(__name__)

_DROPPED_STDERR_LINES = dropped_lines(machine_has_nvidia_device())

#: The trainer child's module (run with ``python -m``); the worker never imports it.
CHILD_MODULE = "service.trainer"
#: Variables a child gets from this process's environment, by exact name...
CHILD_VARIABLES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
        "LD_LIBRARY_PATH", "MPLCONFIGDIR",
    }
)  # fmt: skip
#: ... and by prefix: locale, Keras and its backends, the accelerator's and math libraries' knobs.
CHILD_VARIABLE_PREFIXES = (
    "LC_", "KERAS_", "TF_", "JAX_", "XLA_", "CUDA_", "NVIDIA_", "NCCL_", "OMP_", "KMP_", "MKL_",
    "ONEDNN_", "DNNL_", "OPENBLAS_",
)  # fmt: skip
#: A name that says it holds a secret keeps its variable out, whatever the lists above say.
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|KEY", re.IGNORECASE)
#: A CPU split into logical devices trains with TensorFlow's own kernels, not oneDNN's: at an
#: epoch's end a replica may get an empty batch, and oneDNN's Conv2D answers an empty batch
#: with its input unchanged (TensorFlow 2.21), which fails the next layer.
SPLIT_CPU_KERNELS = {"TF_ENABLE_ONEDNN_OPTS": "0"}
#: Called with each progress message of the child; returns nothing.
MessageHandler = Callable[[ProgressMessage], None]
#: Called about once a second while the child runs; raises to stop it.
Watchdog = Callable[[], None]

#: How long ``TrainerPool.capacity`` waits for a new child to import TensorFlow and say what it
#: holds (seconds on an idle machine; far more on a loaded CI runner).
CAPACITY_TIMEOUT_SECONDS = 180.0
_STOP_GRACE_SECONDS = 5.0
_POLL_SECONDS = 1.0


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a child starts with: the allow-listed variables of ``environ``.

    A variable named like a secret stays out even where the allow-list would let it in. The
    service's own package is put first on PYTHONPATH, so the child imports the same code.
    """
    env = {
        name: value
        for name, value in environ.items()
        if (name in CHILD_VARIABLES or name.startswith(CHILD_VARIABLE_PREFIXES))
        and not SECRET_NAME.search(name)
    }
    root = str(Path(service.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    # TensorFlow's C++ start-up chatter is not for the worker's log; errors still get through.
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


class TrainerProcess:
    """One child process, started by the constructor, that runs one request.

    Attributes:
        process: The child.
        ready: Set once the child has imported TensorFlow and the trainer.
        environment: Variables set for this child on top of the allow-listed ones (kernel
            settings, service.contract.native_kernels).
        whereabouts: What it was doing, from its progress messages (named if it crashes).
    """

    def __init__(
        self,
        name: str = "trainer",
        oom_kills: OomKillCounter | None = None,
        logical_devices: int | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        #: For logs; the pool adds the pid, and what the child runs once it has a request.
        self.name = name
        #: The memory cgroup's count of OOM kills (this process's cgroup, the child's too).
        self.oom_kills = OomKillCounter() if oom_kills is None else oom_kills
        # Read again at submit: OOM kills while a spare waits are none of its request's.
        self._oom_kills_at_submit = self.oom_kills.read()
        self.ready = threading.Event()
        #: The child's Ready message (the devices it holds), once it came.
        self.held: Ready | None = None
        self.environment = dict(environment or {})
        self.whereabouts = ChildWhereabouts()
        # None: the child closed its end of the message pipe (it exited, or is about to).
        self._messages: queue.Queue[ChildMessage | None] = queue.Queue()
        # The CPU's split into logical devices is made before TensorFlow starts: an argument.
        split = [] if logical_devices is None else [str(logical_devices)]
        env = child_environment(os.environ)
        if logical_devices is not None and logical_devices > 1:
            env.update(SPLIT_CPU_KERNELS)
        env.update(self.environment)
        self.process = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE, str(os.getpid()), *split],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stderr = StderrFilter(
            self.process.stderr, sys.stderr.buffer, _DROPPED_STDERR_LINES, name
        )
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name=f"{name}-reader", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def is_usable(self) -> bool:
        """Running and not yet given a request."""
        return self.process.poll() is None and self.process.stdin is not None

    def submit(self, request: TrainingRequest) -> None:
        """Hand the child its one request (it starts as soon as its imports are done)."""
        stdin, self.process.stdin = self.process.stdin, None
        if stdin is None:
            raise RuntimeError(f"{self.name} was already given a request")
        self._oom_kills_at_submit = self.oom_kills.read()
        try:
            stdin.write(json.dumps(request.to_dict()).encode() + b"\n")
            stdin.close()
        except OSError as exc:  # it died meanwhile: supervise reports how
            log.warning("%s did not take its request: %s", self.name, exc)

    def supervise(
        self, on_message: MessageHandler, watchdog: Watchdog, deadline: float | None = None
    ) -> TrainingFinished | InspectionFinished:
        """Follow the submitted request to its final message; the child is gone after.

        Args:
            on_message: Sees every progress message, in order.
            watchdog: Called about once a second.
            deadline: A ``time.monotonic()`` past which the child is stopped.

        Raises:
            JobFailure: The child reported a failure (with its field), died, or ran past
                ``deadline`` (code ``timeout``).
            Exception: Whatever ``watchdog`` or ``on_message`` raised (the child is stopped).
        """
        try:
            final = self._follow(on_message, watchdog, deadline)
        finally:
            self.close()
        if isinstance(final, Failed):
            if final.code == "internal":
                log.error(
                    "%s failed in the trainer: %s\n%s", self.name, final.message, final.traceback
                )
            else:  # the job's own inputs or a named fault: the message says it all
                log.info("%s ended with %s: %s", self.name, final.code, final.message)
                log.debug("%s: where it was raised\n%s", self.name, final.traceback)
            raise JobFailure(final.code, final.message, field=final.field)
        return final

    def _follow(
        self, on_message: MessageHandler, watchdog: Watchdog, deadline: float | None
    ) -> FinalMessage:
        while True:
            watchdog()
            wait = _POLL_SECONDS
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise JobFailure("timeout", "the trainer child ran past its deadline")
            try:
                message = self._messages.get(timeout=wait)
            except queue.Empty:
                continue
            if message is None:
                raise self._died()
            if isinstance(message, FinalMessage):
                return message
            if isinstance(message, ProgressMessage):
                self.whereabouts.see(message)
                on_message(message)

    def close(self) -> None:
        """Stop the child where it still runs (a spare: it was let go unused)."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            self.process.stdin = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(_STOP_GRACE_SECONDS)
        self.stderr.join(_STOP_GRACE_SECONDS)

    def _read(self, stdout: IO[bytes]) -> None:
        with stdout:
            for line in stdout:
                try:
                    message = from_line(line)
                except MessageError as exc:
                    log.warning("%s sent %s", self.name, exc)
                    continue
                if isinstance(message, Ready):
                    self.held = message
                    self.ready.set()
                else:
                    self._messages.put(message)
        self._messages.put(None)

    def _died(self) -> JobFailure:
        try:
            code = self.process.wait(_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # it closed its messages but lives on
            code = None
        crashed = crash_signal(code)
        if crashed is not None:
            log.error(
                "%s crashed with %s %s; its last output:\n%s",
                self.name,
                crashed,
                self.whereabouts.describe(),
                "\n".join(self.stderr.last_lines()),
            )
            return TrainerCrashed(crashed, self.whereabouts, self.environment)
        before, after = self._oom_kills_at_submit, self.oom_kills.read()
        return died(code, None if before is None or after is None else after > before)


#: ``died``'s message for a SIGKILL the memory cgroup does not explain.
KILLED_MESSAGE = (
    "The training process was killed by SIGKILL from outside the service (an operator, the "
    "container runtime or another program), not by the out-of-memory killer as far as the "
    "memory cgroup's count of OOM kills says."
)


def died(code: int | None, oom_killed: bool | None = None) -> JobFailure:
    """The failure of a child that ended without a final message, by its exit status.

    Args:
        code: Its exit status (``-signal`` where a signal ended it); None: not known.
        oom_killed: Whether the memory cgroup's count of OOM kills rose while it ran; None
            where no cgroup file counts them.

    SIGKILL with the count risen is ``out_of_memory``; otherwise ``killed`` (where the count
    is not known, the message says that it may have been the OOM killer).
    """
    if code == -signal.SIGKILL and oom_killed:
        return JobFailure(
            "out_of_memory",
            "The training process was killed by the kernel's out-of-memory killer (the memory "
            "cgroup's count of OOM kills rose while it ran). Try a smaller "
            "training.batch_size or dataset.image_size, or a worker with more memory.",
        )
    if code == -signal.SIGKILL:
        if oom_killed is None:
            return JobFailure(
                "killed",
                "The training process was killed by SIGKILL. This machine's memory cgroup does "
                "not count OOM kills, so the service cannot tell whether the out-of-memory "
                "killer did it or something outside the service.",
            )
        return JobFailure("killed", KILLED_MESSAGE)
    if code is not None and code < 0:
        try:
            how = f"signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"signal {-code}"
    else:
        how = f"exit code {code}"
    return JobFailure("internal", f"The training process exited unexpectedly ({how}).")


class TrainerPool:
    """Hands out trainer children, keeping one warm spare ready where ``warm`` is on.

    Every child is started with ``logical_devices`` (a CPU split into that many devices,
    service.trainer.distribution); ``capacity`` says what a child holds.

    ``prepare`` starts the spare (the worker calls it whenever it looks for work); ``run`` takes
    the spare where there is one and otherwise starts a child then and there. With ``warm`` on,
    the replacement starts as soon as a run has its child, so that it has imported TensorFlow by
    the time the next run comes. Nothing of one run (memory, state of TensorFlow) reaches the
    next. Safe to use from several threads (the job loop and the dry runs share one pool).
    """

    def __init__(
        self,
        warm: bool = True,
        oom_kills: OomKillCounter | None = None,
        logical_devices: int | None = None,
    ) -> None:
        self.warm = warm
        #: Shared by its children (read at each request and at each death).
        self.oom_kills = OomKillCounter() if oom_kills is None else oom_kills
        self.logical_devices = logical_devices
        self._spare: TrainerProcess | None = None
        self._lock = threading.Lock()
        self._held: Ready | None = None
        self.last_pid: int | None = None
        self.last_was_warm = False

    def capacity(self, timeout: float = CAPACITY_TIMEOUT_SECONDS) -> Ready | None:
        """The devices a trainer child holds, as the first child to say so reported.

        Where no child has said yet, one is started and kept as the spare (the next run takes
        it), and this waits up to ``timeout`` seconds for its Ready. Call it from a long-lived
        thread, as ``prepare``. None: no child reported in time (it died, or is still
        importing TensorFlow).
        """
        if self._held is not None:
            return self._held
        with self._lock:
            if self._spare is not None and not self._spare.is_usable():
                self._spare.close()
                self._spare = None
            if self._spare is None:
                self._spare = TrainerProcess("trainer-warm", self.oom_kills, self.logical_devices)
            spare = self._spare
        spare.ready.wait(timeout)
        if spare.held is not None:
            self._held = spare.held
        return self._held

    @property
    def spare(self) -> TrainerProcess | None:
        """The child waiting for the next run, if any."""
        return self._spare

    def prepare(self) -> None:
        """Start a spare child where ``warm`` is on and none is waiting."""
        if not self.warm:
            return
        with self._lock:
            if self._spare is not None and not self._spare.is_usable():
                log.warning(
                    "the warm trainer process exited (code %s)", self._spare.process.returncode
                )
                self._spare.close()
                self._spare = None
            if self._spare is None:
                self._spare = TrainerProcess("trainer-warm", self.oom_kills, self.logical_devices)
                log.info("warm trainer process %s started", self._spare.pid)

    def run(
        self,
        request: TrainingRequest,
        on_message: MessageHandler,
        watchdog: Watchdog,
        deadline: float | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> TrainingFinished | InspectionFinished:
        """Run ``request`` in the spare child, or in a fresh one; see TrainerProcess.supervise.

        ``environment`` (kernel settings) is read when TensorFlow loads: a run that has one gets
        a fresh child started with it, and the spare waits for the next run.
        """
        if environment:
            child = TrainerProcess("trainer", self.oom_kills, self.logical_devices, environment)
            return self._supervise(child, request, on_message, watchdog, deadline, warm=False)
        with self._lock:
            spare, self._spare = self._spare, None
        warm = spare is not None and spare.is_usable()
        if spare is not None and warm:
            return self._supervise(spare, request, on_message, watchdog, deadline, warm=True)
        if spare is not None:
            spare.close()
        child = TrainerProcess("trainer", self.oom_kills, self.logical_devices)
        return self._supervise(child, request, on_message, watchdog, deadline, warm=False)

    def _supervise(
        self,
        child: TrainerProcess,
        request: TrainingRequest,
        on_message: MessageHandler,
        watchdog: Watchdog,
        deadline: float | None,
        warm: bool,
    ) -> TrainingFinished | InspectionFinished:
        child.name = f"trainer {child.pid} ({request.mode} {request.job_id})"
        self.last_pid, self.last_was_warm = child.pid, warm
        log.info("%s: %s", child.name, "warm" if warm else "started now")
        child.submit(request)
        # The next run's child imports TensorFlow while this one runs (an idle process of a
        # few hundred MB, and a few CPU-seconds once per run).
        self.prepare()
        return child.supervise(on_message, watchdog, deadline)

    def train(
        self,
        request: TrainingRequest,
        on_message: MessageHandler,
        watchdog: Watchdog,
        environment: Mapping[str, str] | None = None,
    ) -> TrainingOutcome:
        """Train ``request`` (``environment``: see ``run``); its outcome, or JobFailure."""
        final = self.run(request, on_message, watchdog, environment=environment)
        if not isinstance(final, TrainingFinished):
            raise JobFailure("internal", "The trainer answered a training request wrongly.")
        return final.outcome

    def close(self) -> None:
        """Stop the spare, if any."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()


def run_training(
    request: TrainingRequest,
    on_message: MessageHandler,
    watchdog: Watchdog,
    environment: Mapping[str, str] | None = None,
) -> TrainingOutcome:
    """Train in a fresh child (none kept warm); its outcome, or JobFailure."""
    return TrainerPool(warm=False).train(request, on_message, watchdog, environment)
