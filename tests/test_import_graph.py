"""The imports of service/ and schemas/ flow one way: contract at the bottom, nothing upward.

Every module is parsed (not imported) and each ``import`` statement, at module level or inside a
function, is checked against LAYERS: what each part of the service may import besides itself.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CONTRACT = "service.contract"
TRAINER = "service.trainer"


def _parts(*names: str) -> frozenset[str]:
    return frozenset(f"service.{name}" for name in names)


#: What the processes' own parts build on: storage, tenants, settings, retries, logs, jobs.
FOUNDATION = _parts("storage", "security", "settings", "retry", "config", "logs", "jobs") | {
    CONTRACT
}
#: Part -> the parts it may import (besides itself and the package root, which holds only
#: ``__version__``). Read bottom-up: each part imports only parts listed before it.
LAYERS: dict[str, frozenset[str]] = {
    CONTRACT: frozenset(),
    "schemas": frozenset({CONTRACT}),
    "service.storage": frozenset({CONTRACT}),
    "service.security": frozenset({CONTRACT}) | _parts("storage"),
    # The settings table's machinery, and the service's settings read through it.
    "service.settings": frozenset({CONTRACT}),
    # The one retry helper and its policies' machinery.
    "service.retry": frozenset({CONTRACT}),
    "service.config": frozenset({CONTRACT}) | _parts("settings", "storage"),
    "service.logs": frozenset({CONTRACT}) | _parts("security"),
    "service.jobs": frozenset({CONTRACT}) | _parts("storage", "security", "retry"),
    "service.metrics": FOUNDATION,
    "service.context": FOUNDATION,
    "service.webhooks": FOUNDATION | {"schemas"},
    # The trainer runs in a child process and speaks only contract types with its parent.
    TRAINER: frozenset({CONTRACT}),
    # The worker starts the trainer by module name in a child process; it never imports it.
    # It reads a spec queued by an earlier release through this release's schema.
    "service.worker": FOUNDATION | _parts("context", "metrics", "webhooks") | {"schemas"},
    "service.api": FOUNDATION | _parts("context", "metrics", "webhooks") | {"schemas"},
    # The composition roots: the API app, its server, and the command that starts it all.
    "service.app": FOUNDATION | _parts("api", "context", "metrics", "webhooks") | {"schemas"},
    "service.http_server": _parts("app", "config", "logs", "metrics"),
    "service.__main__": FOUNDATION
    | _parts("app", "cli", "context", "http_server", "metrics", "worker"),
    # The CLI is an HTTP client of the API.
    "service.cli": frozenset({CONTRACT}) | _parts("settings", "retry"),
}
#: Imports against LAYERS that work under way removes. An entry that no longer occurs fails the
#: test, so that this list only shrinks.
PENDING: frozenset[tuple[str, str]] = frozenset()
#: Libraries that load TensorFlow or a Keras backend: the trainer's alone.
TRAINER_ONLY = frozenset({"tensorflow", "keras", "tf_keras", "jax", "tensorboard"})


def _modules() -> Iterator[tuple[str, Path]]:
    for root in ("service", "schemas"):
        for path in sorted((REPO / root).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _is_module(name: str) -> bool:
    base = REPO.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module an import statement of ``path`` names (anywhere in it), with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:  # ``from service import config`` imports service.config
                if _is_module(f"{base}.{alias.name}"):
                    yield f"{base}.{alias.name}", node.lineno


def part_of(module: str) -> str:
    """The part of the service a module belongs to: a LAYERS key, or ``service`` (the root)."""
    if module == "schemas" or module.startswith("schemas."):
        return "schemas"
    return ".".join(module.split(".")[:2])


def problems_of(module: str, path: Path, pending_seen: set[tuple[str, str]]) -> list[str]:
    """What in ``path`` (the module ``module``) imports against LAYERS, one line each."""
    source = part_of(module)
    where = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    if source == "service":
        return []  # the package root: __version__
    if source not in LAYERS:
        return [f"{where}: {module} belongs to no layer; add {source} to LAYERS"]
    allowed = LAYERS[source]
    problems = []
    for name, line in imports_of(module, path):
        top = name.split(".")[0]
        if top in TRAINER_ONLY and source != TRAINER:
            problems.append(f"{where}:{line}: {module} imports {name}: that is the trainer's alone")
        if source == CONTRACT and top != "service" and top not in sys.stdlib_module_names:
            problems.append(f"{where}:{line}: {module} imports {name}: contract is stdlib only")
        if top not in ("service", "schemas"):
            continue
        target = part_of(name)
        if target in (source, "service") or target in allowed:
            continue
        if (module, name) in PENDING:
            pending_seen.add((module, name))
            continue
        problems.append(
            f"{where}:{line}: {module} imports {name}, but {source} may import only "
            f"{', '.join(sorted(allowed)) or 'the standard library'} of the service"
        )
    return problems


def _check_all() -> tuple[list[str], set[tuple[str, str]]]:
    pending_seen: set[tuple[str, str]] = set()
    problems = [
        line for module, path in _modules() for line in problems_of(module, path, pending_seen)
    ]
    return problems, pending_seen


def test_imports_run_one_way() -> None:
    problems, _ = _check_all()

    assert not problems, "Imports against the layering:\n" + "\n".join(problems)


def test_pending_exceptions_are_still_needed() -> None:
    _, seen = _check_all()

    gone = sorted(PENDING - seen)
    assert not gone, f"These imports are gone; remove them from PENDING: {gone}"


@pytest.mark.parametrize(
    ("module", "source", "named"),
    [
        ("schemas.upward", "from service.trainer import preprocessing\n", "service.trainer"),
        ("schemas.upward", "import service.api.jobs\n", "service.api.jobs"),
        ("service.contract.upward", "from service.jobs import store\n", "service.jobs"),
        ("service.contract.upward", "import marshmallow\n", "marshmallow"),
        ("service.trainer.upward", "from service.storage.s3 import S3ObjectStore\n", "storage.s3"),
        ("service.worker.upward", "def run():\n    from service.trainer import run\n", "trainer"),
        ("service.api.upward", "import tensorflow as tf\n", "tensorflow"),
        ("service.cli.upward", "from ..jobs import store\n", "service.jobs"),
    ],
)
def test_the_checker_names_the_module_and_the_import(
    tmp_path: Path, module: str, source: str, named: str
) -> None:
    path = tmp_path / "upward.py"
    path.write_text(source)

    problems = problems_of(module, path, set())

    assert problems and all(module in problem for problem in problems)
    assert named in problems[0]
