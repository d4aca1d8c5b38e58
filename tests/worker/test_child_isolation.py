"""The trainer child starts with no credentials in its environment; the worker's stays as it is.

The child here is started by the one child runner that jobs and dry runs use
(``child_runner.TrainerProcess``), and its ``/proc/<pid>/environ`` is read right after the start:
that file holds the environment the process was started with, whatever it deletes later.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.worker.child_runner import CHILD_MODULE, TrainerProcess, child_environment

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAISOLATIONTEST0001",
    "AWS_SECRET_ACCESS_KEY": "isolation-secret-key-4f1d9c2e7b",
    "AWS_SESSION_TOKEN": "isolation-session-token-8a7b6c",
    "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1/isolation-endpoint",
    "FINETUNE_TOKEN": "ftk_isolationTokenValue0123456789",
    "FINETUNE_WEBHOOK_SECRET": "isolation-webhook-secret-77",
    "TF_SOMETHING_TOKEN": "isolation-named-like-a-secret",
}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _parse(raw: bytes) -> dict[str, str]:
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


class _WatchedEnviron(dict[str, str]):
    """A stand-in for ``os.environ`` that records every change made to it."""

    def __init__(self, initial: dict[str, str]) -> None:
        super().__init__(initial)
        self.changes: list[tuple[str, tuple[Any, ...]]] = []

    def _recorder(name: str) -> Any:  # type: ignore[misc]
        def record(self: _WatchedEnviron, *args: Any, **kwargs: Any) -> Any:
            if not (args and args[0] == "PYTEST_CURRENT_TEST"):  # pytest's own bookkeeping
                self.changes.append((name, args))
            return getattr(dict, name)(self, *args, **kwargs)

        return record

    for _name in ("__setitem__", "__delitem__", "pop", "popitem", "clear", "update", "setdefault"):
        locals()[_name] = _recorder(_name)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[_WatchedEnviron]:
    """This process's environment with secrets in it, its changes recorded."""
    watched = _WatchedEnviron({**os.environ, **SECRETS, "LC_PAPER": "C", "FINETUNE_WORK_DIR": "/w"})
    monkeypatch.setattr(os, "environ", watched)
    yield watched


def test_the_trainer_child_starts_without_credentials(environ: _WatchedEnviron) -> None:
    before = dict(environ)
    child = TrainerProcess(name="trainer-isolation-test")
    try:
        raw = Path(f"/proc/{child.pid}/environ").read_bytes()
    finally:
        child.close()
    started = _parse(raw)
    for value in SECRETS.values():
        assert value.encode() not in raw, value
    assert not [name for name in started if name.startswith("AWS_")], sorted(started)
    # An allow-list: what it names passes, anything else (secret or not) stays behind.
    assert started["LC_PAPER"] == "C" and started["PATH"] == before["PATH"]
    assert "FINETUNE_WORK_DIR" not in started
    assert started["TF_CPP_MIN_LOG_LEVEL"] == before.get("TF_CPP_MIN_LOG_LEVEL", "2")
    # The worker's own environment was never touched, not even for a moment.
    assert environ.changes == []
    assert dict(environ) == before


def test_child_environment_is_an_allow_list() -> None:
    env = child_environment(
        {"PATH": "/bin", "KERAS_BACKEND": "tensorflow", "HOSTNAME": "box", **SECRETS}
    )

    assert env["PATH"] == "/bin" and env["KERAS_BACKEND"] == "tensorflow"
    assert not set(env) & {"HOSTNAME", *SECRETS}
    # The service's code is importable in the child whatever the worker's working directory.
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parents[2])


def test_a_child_whose_parent_is_already_gone_exits_at_once() -> None:
    """The pid it is told is not its parent (the parent died before the prctl took hold)."""
    result = subprocess.run(
        [sys.executable, "-m", CHILD_MODULE, "1"],
        input=b"",
        capture_output=True,
        env=child_environment(os.environ),
        timeout=60,
    )

    assert result.returncode == 0
    assert result.stdout == b""  # not even Ready: it stopped before importing anything


def test_the_worker_process_marks_itself_not_dumpable() -> None:
    code = (
        "from service.security.dumpable import is_dumpable, make_undumpable\n"
        "before = is_dumpable()\n"
        "assert make_undumpable('the worker')\n"
        "print(before, is_dumpable())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
