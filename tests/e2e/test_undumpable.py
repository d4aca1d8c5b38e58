"""No process that holds credentials lets another process of its user read them from /proc.

The gunicorn master and its workers (deploy/gunicorn.conf.py), ``python -m service serve``,
its API workers and its job worker each hold the storage credentials in their environment.
Root ignores the not-dumpable flag, so the servers run here as an unprivileged user (nobody,
through ``setpriv``, where the tests run as root; as the test's own user otherwise), and a
reader of that same user tries every one of their ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.net import free_port
from tests.helpers.processes import ServiceProcess, embedded_service, gunicorn_api

pytestmark = pytest.mark.slow

SECRET = "undumpable-secret-0123456789"
NOBODY = 65534


@dataclass(frozen=True)
class Account:
    """The unprivileged user the servers and the reader run as."""

    uid: int
    run_as: tuple[str, ...]  # command prefix; empty where the tests already run unprivileged
    python: str  # an interpreter with the project's packages that this user may run


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    """nobody through setpriv where the tests run as root, else the test's own user."""
    if os.geteuid() != 0:
        yield Account(os.getuid(), (), sys.executable)
        return
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: no way to drop to a uid")
    run_as = (setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    # A checkout in a private folder (``mktemp -d`` makes one 0700) is out of nobody's reach:
    # let it pass through (search, not list) the folders above the project and its interpreter
    # for the module's length, as a checkout in a shared folder is.
    with _passable_by_all(PROJECT, Path(sys.executable).parent):
        yield from _unprivileged(run_as)


PROJECT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _passable_by_all(*places: Path) -> Iterator[None]:
    """Give every folder above ``places`` search permission for others; restore it after."""
    changed: dict[Path, int] = {}
    for place in places:
        for folder in [place, *place.parents]:
            mode = folder.stat().st_mode
            if folder not in changed and not mode & stat.S_IXOTH:
                changed[folder] = mode
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for folder, mode in changed.items():
            folder.chmod(stat.S_IMODE(mode))


def _unprivileged(run_as: tuple[str, ...]) -> Iterator[Account]:
    if _can_run(run_as, sys.executable):
        yield Account(NOBODY, run_as, sys.executable)
        return
    # The interpreter lies where nobody cannot go (a pyenv build under /root): a venv of the
    # system's Python of the same version, seeing this environment's packages, stands in.
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not _can_run(run_as, str(system)):
        pytest.skip(f"no Python {sys.version_info[:2]} that uid {NOBODY} may run")
    venv = Path(tempfile.mkdtemp(prefix="finetune-undumpable-venv-"))
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True)
    packages = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    site = next(venv.glob("lib/python*/site-packages"))
    # addsitedir, not a bare path: the packages' own .pth files (the project's editable
    # install among them) are read too.
    (site / "project.pth").write_text(f"import site; site.addsitedir({str(packages)!r})\n")
    subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    yield Account(NOBODY, run_as, str(venv / "bin" / "python"))
    shutil.rmtree(venv, ignore_errors=True)


def _can_run(run_as: tuple[str, ...], python: str) -> bool:
    """Whether a program started by ``run_as`` may start ``python`` itself (exec, not setpriv)."""
    check = subprocess.run(
        [*run_as, "/bin/sh", "-c", f"{python} -c pass"], capture_output=True, timeout=60
    )
    return check.returncode == 0


@pytest.fixture
def shared_dir(account: Account) -> Iterator[Path]:
    """A folder the unprivileged user may write (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="finetune-undumpable-"))
    root.chmod(0o777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _env(root: Path) -> dict[str, str]:
    return {
        "FINETUNE_STATE_URI": f"file://{root / 'state'}",
        "FINETUNE_WORK_DIR": str(root / "work"),
        "FINETUNE_WARM_TRAINER": "0",
        "AWS_ACCESS_KEY_ID": "AKIAUNDUMPABLETEST00",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "HOME": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found = [pid]
    for parent in found:
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                found += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue  # the thread ended meanwhile
    return found


def _holds_secret(pid: int) -> bool:
    """Whether ``pid`` was started with the secret in its environment (read as the test)."""
    try:
        return SECRET.encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except PermissionError:
        return True  # the test is unprivileged too: what it cannot read, it counts as holding
    except OSError:
        return False  # exited


def _readable_by(account: Account, pid: int) -> bool:
    """Whether a process of ``account`` can read ``/proc/<pid>/environ``."""
    reader = subprocess.run(
        [*account.run_as, account.python, "-c", f"open('/proc/{pid}/environ', 'rb').read()"],
        capture_output=True,
        timeout=30,
    )
    return reader.returncode == 0


def _wait_for_line(process: ServiceProcess, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log():
        assert time.monotonic() < deadline, process.log()[-4000:]
        time.sleep(0.2)


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]


def test_a_dumpable_process_of_the_same_user_is_readable(
    account: Account, shared_dir: Path
) -> None:
    """The control: the reader can read a process of its user that did nothing about it."""
    sleeper = subprocess.Popen(
        [*account.run_as, "sleep", "60"], env={"AWS_SECRET_ACCESS_KEY": SECRET}
    )
    try:
        time.sleep(0.5)  # setpriv has exec'd sleep
        assert _holds_secret(sleeper.pid)
        assert _readable_by(account, sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("server", ["gunicorn", "serve"])
def test_no_process_holding_credentials_is_readable_by_its_own_user(
    account: Account, shared_dir: Path, server: str
) -> None:
    port = free_port()
    env = _env(shared_dir)
    if server == "gunicorn":
        process = gunicorn_api(
            port, env, shared_dir, workers=2, run_as=account.run_as, python=account.python
        )
        expected = 3  # the master and two workers
    else:
        process = embedded_service(
            port, env, shared_dir, api_workers=2, run_as=account.run_as, python=account.python
        )
        _wait_for_line(process, "polling")  # its job worker has started and set its flag
        expected = 4  # serve (gunicorn's master), two API workers, the job worker
    try:
        assert process.process is not None
        holders = [pid for pid in _tree(process.process.pid) if _holds_secret(pid)]
        readable = [_command(pid) for pid in holders if _readable_by(account, pid)]
    finally:
        process.stop()
    assert len(holders) >= expected, holders
    assert readable == [], f"readable by uid {account.uid}: {readable}"
