"""gunicorn settings for the API: ``gunicorn -c deploy/gunicorn.conf.py 'service.app:create_app()'``.

Every setting can be overridden from the environment (``GUNICORN_BIND``, ``GUNICORN_WORKERS``...).
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 10
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
# No request headers, user names or referrers in the access log (Authorization stays out);
# both gunicorn logs pass through the service's secret redaction.
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
logger_class = "service.logs.RedactingGunicornLogger"
# Each worker builds its own app (and storage client): nothing is shared across a fork.
preload_app = False
