"""prometheus_client's multiprocess mode for the API's gunicorn workers.

prometheus_client chooses where a metric keeps its values once, when it is first imported: in
memory, or in files under ``PROMETHEUS_MULTIPROC_DIR`` that a scrape of any worker sums. A
process that imports it before the variable is set keeps its values in memory for good, and
``/metrics`` then reads an empty directory. So the gunicorn master (deploy/gunicorn.conf.py, or
``python -m service serve``) calls :func:`prepare_directory` before anything imports
prometheus_client; the workers it forks inherit the variable.

This module imports nothing of prometheus_client at its top for that reason.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping

#: prometheus_client's own variable.
DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class MetricsModeError(RuntimeError):
    """prometheus_client was imported before its multiprocess directory was set."""


def prepare_directory(environ: MutableMapping[str, str] = os.environ) -> str:
    """Set up the multiprocess directory for one API server and return its path.

    ``PROMETHEUS_MULTIPROC_DIR`` where set (an ``emptyDir`` in Kubernetes), else a fresh temporary
    directory, which is then set in ``environ``. It is created where missing and emptied: values
    left by a previous server would be summed in.

    Raises:
        MetricsModeError: prometheus_client is already imported in this process in its
            in-memory mode, so this process's metrics would never reach the directory.
    """
    path = environ.get(DIRECTORY_VARIABLE) or tempfile.mkdtemp(prefix="finetune-metrics-")
    environ[DIRECTORY_VARIABLE] = path
    if "prometheus_client.values" in sys.modules and not in_multiprocess_mode():
        raise MetricsModeError(
            f"prometheus_client was imported before {DIRECTORY_VARIABLE} was set; "
            "set it up before importing service.app or prometheus_client."
        )
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        target = os.path.join(path, name)
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            os.remove(target)
    return path


def in_multiprocess_mode() -> bool:
    """Whether this process's metrics keep their values in the multiprocess directory."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def mark_process_dead(pid: int) -> None:
    """A gunicorn worker ended: drop its live-gauge files (gunicorn's ``child_exit`` hook)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
