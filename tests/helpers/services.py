"""Services (config, storage, job store) on a local directory, for in-process tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.config import Config
from service.context import Services, build_services


def local_services(root: Path, **config: Any) -> Services:
    """Job state in ``root/state``, scratch in ``root/work``; ``config`` overrides Config fields."""
    settings: dict[str, Any] = {"allow_local_storage": True, **config}
    return build_services(
        Config(state_uri=f"file://{root / 'state'}", work_dir=root / "work", **settings)
    )
