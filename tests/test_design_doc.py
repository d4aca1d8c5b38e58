"""docs/DESIGN.md names every part of the service and only parts that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = (REPO / "docs" / "DESIGN.md").read_text(encoding="utf-8")


def _parts() -> list[str]:
    names = []
    for path in sorted((REPO / "service").iterdir()):
        if path.is_dir() and (path / "__init__.py").is_file():
            names.append(f"{path.name}/")
        elif path.suffix == ".py" and path.name != "__init__.py":
            names.append(path.name)
    return names


def test_every_part_of_the_service_is_named() -> None:
    missing = [name for name in _parts() if name not in DESIGN and name[:-3] not in DESIGN]
    assert not missing, f"docs/DESIGN.md does not name {missing}"


def test_every_file_it_names_exists() -> None:
    tops = ("service/", "schemas/", "tests/", "bench/", "deploy/", "docs/")
    named = {
        path if path.startswith(tops) else f"service/{path}"
        for path in re.findall(r"`([\w/.]+/[\w.]+\.(?:py|md))`", DESIGN)
    }
    gone = sorted(path for path in named if not (REPO / path).exists())
    assert len(named) > 5, named
    assert not gone, f"docs/DESIGN.md names files that do not exist: {gone}"
