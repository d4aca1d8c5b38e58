"""The reference for benchmark 4: a bare Flask app with the same two routes and no work.

``GET /v1/jobs/<id>`` answers a fixed job-sized JSON document and ``POST /v1/jobs`` parses the
body and answers 201 with it: what any Flask service pays, so that the service's figures can be
given as a ratio to it under the same gunicorn settings.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request

JOB = {
    "id": "ftj_01JD3Q7Z8KX0000000000000000",
    "status": "queued",
    "created_at": "2026-11-27T21:04:05Z",
    "started_at": None,
    "finished_at": None,
    "name": "bench",
    "labels": {},
    "spec": {"padding": "x" * 1200},
    "attempt": 0,
    "progress": {"phase": "queued"},
    "metrics": {},
    "result": None,
    "error": None,
}


def create_app() -> Flask:
    """The bare app."""
    app = Flask(__name__)

    @app.get("/v1/jobs/<job_id>")
    def get_job(job_id: str) -> Response:
        return Response(json.dumps({**JOB, "id": job_id}), mimetype="application/json")

    @app.post("/v1/jobs")
    def create_job() -> tuple[Response, int]:
        body: Any = request.get_json()
        answer = {**JOB, "spec": body}
        return Response(json.dumps(answer), mimetype="application/json"), 201

    return app
