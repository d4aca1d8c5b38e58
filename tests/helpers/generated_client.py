"""A Python client of the API, generated from its OpenAPI document by openapi-python-client."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from tests.helpers.processes import VENV_BIN

PACKAGE = "finetune_client"
#: No post hooks: by default the generator runs ruff on what it wrote, and the tests read the
#: code as the generator itself writes it.
_CONFIG = (
    "post_hooks: []\n"
    f"package_name_override: {PACKAGE}\n"
    f"project_name_override: {PACKAGE.replace('_', '-')}\n"
)


def generate_client(document: str, into: Path) -> str:
    """Run openapi-python-client on ``document`` and write the package ``PACKAGE`` under ``into``.

    Args:
        document: The document's URL (``http://...``) or the path of a file holding it.
        into: The folder the package goes into (created).

    Returns:
        What the generator printed (stdout and stderr together).

    Raises:
        AssertionError: The generator failed or found something to warn about (it runs with
            ``--fail-on-warning``); the message holds its output.
    """
    into.mkdir(parents=True, exist_ok=True)
    config = into / "generator.yaml"
    config.write_text(_CONFIG)
    source = ["--url", document] if document.startswith("http") else ["--path", document]
    argv = [
        str(VENV_BIN / "openapi-python-client"),
        "generate",
        *source,
        "--config",
        str(config),
        "--meta",
        "none",
        "--output-path",
        str(into / PACKAGE),
        "--fail-on-warning",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"openapi-python-client failed:\n{output}"
    return output


@contextmanager
def imported_client(into: Path) -> Iterator[ModuleType]:
    """The generated package under ``into``, imported with all its modules (``.models``,
    ``.api.jobs.get_v1_jobs_job_id``, ...); forgotten again afterwards."""
    sys.path.insert(0, str(into))
    importlib.invalidate_caches()
    try:
        package = importlib.import_module(PACKAGE)
        for module in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
            importlib.import_module(module.name)
        yield package
    finally:
        sys.path.remove(str(into))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]
