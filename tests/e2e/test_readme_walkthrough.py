"""The README's "Five minutes with curl", run as a new user runs it, so it cannot drift.

Every ``sh`` block of the walkthrough is taken from README.md and run with bash in a fresh
directory (``.venv`` and ``examples`` linked there, as in a clone) against a real
``python -m service serve`` started there (what ``make serve``, step 1, runs). The commands run
as written, with what a user changes: the job id for ``ftj_...``, the test's port for 8080
(and ``FINETUNE_URL`` for the CLI, as the README says to set it for another address). The
answers are checked against what the prose after each block says: ``201`` and ``Location``,
the result URIs and metrics, the layers step 3 says it freezes, and each ``errors.json.<field>``
a ``422`` is said to name. To see the status and headers, ``curl`` on the PATH is a wrapper
that runs the real one with ``-D`` (dump the headers to a file) added.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.net import free_port
from tests.helpers.processes import REPO, VENV_BIN, ServiceProcess, embedded_service

pytestmark = pytest.mark.slow

README = REPO / "README.md"
SECTION = "## Five minutes with curl"


@dataclass(frozen=True)
class Block:
    """One ``sh`` block of the walkthrough: its step, its text, and the prose after it."""

    step: int
    code: str
    after: str

    def commands(self) -> list[str]:
        """The block's shell commands: lines joined where a quote or a backslash goes on."""
        commands: list[str] = []
        current = ""
        for line in self.code.splitlines():
            current = f"{current}\n{line}" if current else line
            if current.endswith("\\") or not _balanced(current):
                continue
            commands.append(current)
            current = ""
        assert not current, f"step {self.step}: unfinished command {current!r}"
        return commands

    def fields_named(self) -> list[list[str]]:
        """The ``errors.json.<field>`` paths the prose after the block names."""
        return [name.split(".") for name in re.findall(r"`errors\.json\.([\w.]+)`", self.after)]


def _balanced(command: str) -> bool:
    try:
        shlex.split(command, comments=True)
    except ValueError:  # "No closing quotation"
        return False
    return True


def walkthrough(text: str) -> list[Block]:
    """The walkthrough's blocks in order, from the README's text."""
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    section = text[start:end]
    blocks: list[Block] = []
    for step_match in re.finditer(r"^(\d+)\. (.*?)(?=^\d+\. |\Z)", section, re.S | re.M):
        step, body = int(step_match.group(1)), step_match.group(2)
        pieces = re.split(r"^   ```sh\n(.*?)^   ```\n", body, flags=re.S | re.M)
        # pieces: prose, code, prose, code, prose ...
        for index in range(1, len(pieces), 2):
            code = "\n".join(line.removeprefix("   ") for line in pieces[index].splitlines())
            blocks.append(Block(step, code, pieces[index + 1]))
    return blocks


@dataclass
class Answer:
    """What one command did: exit code, output, and (for curl) the HTTP status and headers."""

    returncode: int
    stdout: str
    stderr: str
    status: int | None
    headers: dict[str, str]

    def json(self) -> Any:
        """The output as JSON."""
        return json.loads(self.stdout)


class Shell:
    """Runs commands with bash in the user's directory, the port and job id substituted."""

    def __init__(self, home: Path, port: int, env: dict[str, str]) -> None:
        self.home = home
        self.port = port
        self.env = env
        self.job_id: str | None = None

    def run(self, command: str, timeout: float = 240) -> Answer:
        """Run one command of a block; its headers land in a fresh file."""
        command = command.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        if "ftj_..." in command:
            assert self.job_id, "a command names the job before step 3 made it"
            command = command.replace("ftj_...", self.job_id)
        headers = self.home / "curl-headers.txt"
        headers.unlink(missing_ok=True)
        run = subprocess.run(
            ["bash", "-c", command],
            cwd=self.home,
            env={**self.env, "CURL_HEADERS": str(headers)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        status, fields = _read_headers(headers)
        return Answer(run.returncode, run.stdout, run.stderr, status, fields)


def _read_headers(path: Path) -> tuple[int | None, dict[str, str]]:
    if not path.exists():
        return None, {}
    # The last response's block (curl writes one per response, e.g. after a 100 Continue).
    block = path.read_text().strip().split("\r\n\r\n")[-1].splitlines()
    status = int(block[0].split()[1])
    fields = dict(line.split(": ", 1) for line in block[1:] if ": " in line)
    return status, {name.lower(): value for name, value in fields.items()}


def _field(body: dict[str, Any], path: list[str]) -> Any:
    node: Any = body["errors"]["json"]
    for part in path:
        assert part in node, f"{'.'.join(path)} not named in {body['errors']['json']}"
        node = node[part]
    return node


def _user_directory(root: Path) -> Path:
    """A directory laid out like a clone after ``make install``, and a curl that shows headers."""
    home = root / "clone"
    home.mkdir()
    (home / ".venv").symlink_to(VENV_BIN.parent)
    (home / "examples").symlink_to(REPO / "examples")
    shims = root / "bin"
    shims.mkdir()
    real_curl = shutil.which("curl")
    assert real_curl, "the walkthrough uses curl"
    shim = shims / "curl"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(real_curl)} -D "$CURL_HEADERS" "$@"\n')
    shim.chmod(0o755)
    return home


def _environment(root: Path, port: int) -> dict[str, str]:
    """The test's environment without our settings (a new user has none), the shim first."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FINETUNE_", "AWS_ENDPOINT", "PROMETHEUS_"))
    }
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["FINETUNE_URL"] = f"http://127.0.0.1:{port}"  # for the CLI: the test's port, not 8080
    return env


def test_the_blocks_are_found_and_step_one_is_make_serve() -> None:
    blocks = walkthrough(README.read_text())
    assert [block.step for block in blocks] == [1, 2, 3, 4, 4, 5, 6, 7, 7]
    assert blocks[0].commands() == ["make serve"]
    # What the test starts instead of `make serve` (it needs no Makefile in the directory).
    recipe = re.search(r"^serve:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.M)
    assert recipe and recipe.group(1) == "$(PY) -m service serve --port $(PORT)"


def test_the_walkthrough_as_written(tmp_path: Path) -> None:
    blocks = walkthrough(README.read_text())
    home = _user_directory(tmp_path)
    port = free_port()
    env = _environment(tmp_path, port)
    shell = Shell(home, port, env)
    serve = embedded_service(port, env, tmp_path, cwd=home)
    try:
        _steps(blocks, shell, home, serve)
    finally:
        serve.stop()
    assert (home / "finetune-data" / "jobs").is_dir(), "state in ./finetune-data, as step 1 says"


def _steps(blocks: list[Block], shell: Shell, home: Path, serve: ServiceProcess) -> None:
    by_step: dict[int, list[Block]] = {}
    for block in blocks:
        by_step.setdefault(block.step, []).append(block)

    # 2. The example model and data.
    (make_example,) = by_step[2][0].commands()
    made = shell.run(make_example)
    assert made.returncode == 0, made.stderr
    assert (home / "example" / "base" / "model.keras").is_file()

    # 3. Submit: 201, Location, queued.
    (submit,) = by_step[3][0].commands()
    created = shell.run(submit)
    assert created.status == 201, created.stdout
    job = created.json()
    assert job["status"] == "queued"
    assert created.headers["location"] == f"/v1/jobs/{job['id']}"
    shell.job_id = job["id"]

    # 4. Poll (once now), wait with the CLI, poll again: succeeded with its URIs.
    polls = by_step[4][0].commands()
    for command in polls:
        assert shell.run(command).status == 200, command
    (wait,) = by_step[4][1].commands()
    waited = shell.run(wait)
    assert waited.returncode == 0, f"{waited.stderr}\n--- serve\n{serve.log()[-6000:]}"
    final, events, listing = (shell.run(command).json() for command in polls)
    assert final["status"] == "succeeded"
    for name in ("saved_model_uri", "keras_uri", "manifest_uri"):
        assert final["result"][name].startswith(f"file://{home}/example/out/"), final["result"]
    assert {"accuracy", "val_accuracy"} <= set(final["result"]["metrics"])
    types = [event["type"] for event in events["events"]]
    assert types[:2] == ["created", "claimed"] and "phase" in types and "epoch" in types
    assert job["id"] in [listed["id"] for listed in listing["jobs"]]
    # Step 3's prose names the layers the job froze, in order.
    frozen = next(e for e in events["events"] if "frozen_layers" in e["data"])["data"]
    names = frozen["frozen_layers"]
    named = ", ".join(f"`{name}`" for name in names[:-1]) + f" and `{names[-1]}`"
    assert named in " ".join(README.read_text().split()), f"step 3 should say it freezes {named}"

    # 5. The files, and the SavedModel served.
    listed, served = (shell.run(command) for command in by_step[5][0].commands())
    assert listed.returncode == 0, listed.stderr
    assert {"model.keras", "manifest.json", "saved_model", "saved_model.pb"} <= set(
        listed.stdout.split()
    )
    assert served.returncode == 0 and "output_0" in served.stdout, served.stderr

    # 6 and 7. Each 422 names the fields its prose says.
    for block in (*by_step[6], *by_step[7]):
        (command,) = block.commands()
        refused = shell.run(command)
        assert refused.status == 422, refused.stdout
        assert block.fields_named(), f"step {block.step}: the prose names no field"
        for path in block.fields_named():
            assert _field(refused.json(), path), path
    jobs = json.loads(shell.run(f"curl -s http://127.0.0.1:{shell.port}/v1/jobs").stdout)
    assert [listed["id"] for listed in jobs["jobs"]] == [job["id"]], "nothing else was queued"


def test_blocks_split_into_commands_as_bash_would() -> None:
    block = Block(0, "a 'x\ny'  # c\nb \\\n  c\nd", "")
    assert block.commands() == ["a 'x\ny'  # c", "b \\\n  c", "d"]
