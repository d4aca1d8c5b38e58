"""``GET /metrics``: Prometheus text format (see service/metrics/)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from service.metrics.api import render

blp = Blueprint("metrics", __name__)


@blp.get("/metrics")
def metrics() -> Response:
    """API latency by route and storage errors (all gunicorn workers), jobs by status, queue."""
    return render(current_app.extensions["finetune_store_collector"])
