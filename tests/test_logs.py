"""JSON log lines carry the job id: bound in the job's context or named by its thread."""

from __future__ import annotations

import io
import json
import logging
import threading

from service.logs import JobIdFilter, job_logging, make_formatter

JOB = "ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ"


def _logger(stream: io.StringIO, log_format: str) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(JobIdFilter())
    logger = logging.getLogger(f"test-logs-{log_format}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_json_lines_carry_the_job_id_of_the_context_and_of_job_threads() -> None:
    stream = io.StringIO()
    log = _logger(stream, "json")
    log.info("idle")
    with job_logging(JOB):
        log.info("staging %s", "inputs")
    thread = threading.Thread(target=lambda: log.warning("lease renewed"), name=f"heartbeat-{JOB}")
    thread.start()
    thread.join()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        with job_logging(JOB):
            log.exception("failed")
    idle, staging, beat, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert idle["job_id"] is None and idle["message"] == "idle"
    assert staging == {**staging, "job_id": JOB, "message": "staging inputs", "level": "INFO"}
    assert beat["job_id"] == JOB and beat["thread"] == f"heartbeat-{JOB}"
    assert failed["job_id"] == JOB and "RuntimeError: boom" in failed["exc_info"]


def test_text_lines_tag_the_job_id() -> None:
    stream = io.StringIO()
    log = _logger(stream, "text")
    with job_logging(JOB):
        log.info("training")
    assert f"[{JOB}]: training" in stream.getvalue()
