"""Prometheus metrics of the API (``GET /metrics``) and of each worker (its own port).

The API runs under gunicorn with several worker processes. Counters and histograms that each
process records (request latency, storage errors) use prometheus_client's multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set (deploy/gunicorn.conf.py sets it up), so a scrape of any
process sums them over all; gauges about jobs (by status, queue depth) are computed from the job
store at scrape time, cached for a few seconds, so every process reports the same numbers.

A worker serves its own metrics (job durations, epochs per second, storage errors, webhook
deliveries) on ``FINETUNE_WORKER_METRICS_PORT``.
"""
