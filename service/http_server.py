"""Runs the API under gunicorn from Python (the embedded default's ``serve``)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from service.logs import ACCESS_LOG_FORMAT


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


def serve_api(host: str, port: int, workers: int = 2) -> None:
    """Serve ``create_app()`` until a signal stops gunicorn."""
    _EmbeddedGunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": 4,
            "worker_class": "gthread",
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": "-",
            "access_log_format": ACCESS_LOG_FORMAT,
            "logger_class": "service.logs.RedactingGunicornLogger",
        }
    ).run()
