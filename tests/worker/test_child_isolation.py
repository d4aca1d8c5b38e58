"""The trainer child starts with no storage credentials in its environment.

The child here is started by the same function that starts the real trainer
(``isolation.start_child``, used by ``runner.run_training``), with a trivial target so the test
can read ``/proc/<pid>/environ`` while it runs: that file holds the environment the process
was started with, whatever the process deletes from ``os.environ`` later.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.worker.isolation import start_child
from service.worker.runner import stop_process
from tests.helpers.children import idle

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAISOLATIONTEST0001",
    "AWS_SECRET_ACCESS_KEY": "isolation-secret-key-4f1d9c2e7b",
    "AWS_SESSION_TOKEN": "isolation-session-token-8a7b6c",
    "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1/isolation-endpoint",
    "FINETUNE_TOKEN": "ftk_isolationTokenValue0123456789",
}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _parse(raw: bytes) -> dict[str, str]:
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def _assert_clean(environ_bytes: bytes, role: str) -> None:
    environ = _parse(environ_bytes)
    assert not [name for name in environ if name.startswith("AWS_")], (role, sorted(environ))
    assert "FINETUNE_TOKEN" not in environ, role
    for value in SECRETS.values():
        assert value.encode() not in environ_bytes, (role, value)


def test_the_trainer_child_starts_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FINETUNE_WORK_DIR", "/tmp/isolation-work")  # not a secret: kept
    process, messages = start_child(idle, (60,), name="trainer-isolation-test")
    try:
        assert messages.get(timeout=60) == {"type": "ready"}
        assert process.pid is not None
        raw = Path(f"/proc/{process.pid}/environ").read_bytes()
        _assert_clean(raw, "trainer")
        assert _parse(raw)["FINETUNE_WORK_DIR"] == "/tmp/isolation-work"
    finally:
        stop_process(process)
        messages.close()
    # The worker itself keeps its environment (its boto3 client read it at start-up anyway).
    for name, value in SECRETS.items():
        assert os.environ[name] == value


_FRESH_WORKER = """
import json, sys
from multiprocessing import resource_tracker
from pathlib import Path
from service.worker.isolation import start_child
from service.worker.runner import stop_process
from tests.helpers.children import idle
assert getattr(resource_tracker._resource_tracker, "_pid", None) is None
process, messages = start_child(idle, (60,), name="trainer-isolation-test")
try:
    messages.get(timeout=60)
    tracker = resource_tracker._resource_tracker._pid
    found = {
        role: Path(f"/proc/{pid}/environ").read_bytes().hex()
        for role, pid in (("trainer", process.pid), ("resource tracker", tracker))
    }
finally:
    stop_process(process)
print(json.dumps(found))
"""


def test_the_resource_tracker_starts_without_credentials_too() -> None:
    """multiprocessing's helper process, started on a worker's first job, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_WORKER],
        cwd=REPO,
        env={**os.environ, **SECRETS},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(found) == {"trainer", "resource tracker"}
    for role, environ_hex in found.items():
        _assert_clean(bytes.fromhex(environ_hex), role)


def test_the_worker_process_marks_itself_not_dumpable() -> None:
    code = (
        "from service.worker.isolation import is_dumpable, make_undumpable\n"
        "before = is_dumpable()\n"
        "assert make_undumpable()\n"
        "print(before, is_dumpable())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
