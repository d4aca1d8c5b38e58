"""Runs the API under gunicorn from Python (the embedded default's ``serve``)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from service.logs import ACCESS_LOG_FORMAT
from service.metrics.multiprocess import mark_process_dead, prepare_directory


class _EmbeddedGunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn with settings given in code rather than a config file."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from service.app import create_app

        return create_app()


def _child_exit(server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)


def serve_api(host: str, port: int, workers: int = 2) -> None:
    """Serve ``create_app()`` until a signal stops gunicorn.

    ``/metrics`` sums over the gunicorn workers through prometheus_client's multiprocess mode,
    in a fresh temporary ``PROMETHEUS_MULTIPROC_DIR`` unless one is set (as in
    deploy/gunicorn.conf.py). This process must not have imported prometheus_client (nor
    service.app) before: see service/metrics/multiprocess.py.

    Raises:
        MetricsModeError: prometheus_client was imported already.
    """
    prepare_directory()
    _EmbeddedGunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": 4,
            "worker_class": "service.api.gunicorn_worker.JsonErrorWorker",
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": "-",
            "child_exit": _child_exit,
            "access_log_format": ACCESS_LOG_FORMAT,
            "logger_class": "service.logs.RedactingGunicornLogger",
        }
    ).run()
