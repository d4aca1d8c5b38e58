"""The kernel settings a job's trainer child starts with, decided from the staged base model.

The worker reads the model's stored config (a ``.keras`` file's ``config.json``, an ``.h5``
file's ``model_config``; no TensorFlow, nothing of the file runs) and looks for layers that crash
oneDNN's CPU kernels when they train (service.contract.native_kernels). A SavedModel folder, a
named architecture (none of keras.applications has such a layer) or a job whose every phase
keeps the whole base frozen needs no look; what the look misses, the one retry after a native
crash (service.worker.native_crash) still catches.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

from service.contract.native_kernels import KernelSetting, find_hazards, kernel_setting
from service.contract.plan import TrainingPlan

log = logging.getLogger(__name__)

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def kernel_setting_for(plan: TrainingPlan, base_model_path: Path) -> KernelSetting | None:
    """The setting the job's model needs, or None (TensorFlow's defaults)."""
    if plan.architecture is not None:
        return None
    if all(phase.freeze.kind == "base" for phase in plan.phases):
        return None  # the base never trains: the crash is in a training layer's gradient
    config = read_model_config(base_model_path)
    if config is None:
        return None
    try:
        return kernel_setting(find_hazards(config))
    except (KeyError, TypeError, ValueError) as exc:  # a config of a form not foreseen
        log.warning("the model config of %s was not understood: %r", base_model_path, exc)
        return None


def read_model_config(path: Path) -> dict[str, Any] | None:
    """The stored model config of a ``.keras`` or ``.h5`` file; None for other forms."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _object(json.loads(archive.read("config.json")))
        if path.is_file() and _starts_with(path, _HDF5_SIGNATURE):
            return _h5_config(path)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        # The trainer names what is wrong with the file; here it only means: no look.
        log.info("no model config read from %s: %r", path, exc)
    return None


def _h5_config(path: Path) -> dict[str, Any] | None:
    import h5py

    with h5py.File(path, "r") as file:
        raw = file.attrs.get("model_config")
    if raw is None:
        return None
    return _object(json.loads(raw.decode() if isinstance(raw, bytes) else str(raw)))


def _starts_with(path: Path, signature: bytes) -> bool:
    with path.open("rb") as file:
        return file.read(len(signature)) == signature


def _object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None
