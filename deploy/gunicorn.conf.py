"""gunicorn settings for the API: ``gunicorn -c deploy/gunicorn.conf.py 'service.app:create_app()'``.

Every setting can be overridden from the environment (``GUNICORN_BIND``, ``GUNICORN_WORKERS``...).

Metrics: each gunicorn worker is its own process, so ``/metrics`` uses prometheus_client's
multiprocess mode. ``PROMETHEUS_MULTIPROC_DIR`` names a directory private to this server (an
``emptyDir`` in Kubernetes); unset, a fresh temporary one is made. It is emptied at start-up, and
a worker that exits is marked dead so its live gauges drop out.
"""

import os

from service.logs import ACCESS_LOG_FORMAT
from service.metrics.multiprocess import mark_process_dead, prepare_directory

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# gunicorn's gthread worker, answering the requests gunicorn itself refuses in JSON.
worker_class = "service.api.gunicorn_worker.JsonErrorWorker"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 10
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
# No request headers, user names or referrers in the access log (Authorization stays out);
# both gunicorn logs pass through the service's secret redaction.
access_log_format = ACCESS_LOG_FORMAT
logger_class = "service.logs.RedactingGunicornLogger"
# Each worker builds its own app (and storage client): nothing is shared across a fork.
preload_app = False


# Here, in the master, before any worker imports prometheus_client: it picks its mode at import.
prepare_directory()


def on_starting(server):  # type: ignore[no-untyped-def]
    """gunicorn hook, in the master before it forks: not dumpable, nor are its workers."""
    from service.security.dumpable import make_undumpable

    # The master and every worker hold the storage credentials in their environment; no
    # process of the same user (a child started by a worker) may read them from /proc.
    make_undumpable("the gunicorn master")


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """gunicorn hook: a worker process ended; drop its live-gauge files."""
    mark_process_dead(worker.pid)
