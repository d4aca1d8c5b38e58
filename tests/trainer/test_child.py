"""The child-process boundary: messages on a queue, one final result or error, no raising."""

from __future__ import annotations

import multiprocessing
import queue
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf

from service.contract.messages import ChildMessage, Failed, InspectionFinished, PhaseStarted
from service.trainer.child import describe_failure, run_in_child, run_request
from service.trainer.errors import Incompatible
from tests.trainer.support import Recorder, make_request

pytestmark = pytest.mark.slow


def _drain(events: Any, process: multiprocessing.process.BaseProcess) -> list[dict[str, Any]]:
    """Every message until the final one (the queue must be read before join)."""
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1]["type"] not in ("result", "error"):
        try:
            messages.append(events.get(timeout=120))
        except queue.Empty:
            pytest.fail(f"no final message; child exit code {process.exitcode}: {messages}")
    process.join(timeout=60)
    return messages


def test_spawned_child_reports_phases_epochs_and_result(
    tmp_path: Path, pretrained_h5: Path, digits_train: Path
) -> None:
    request = make_request(
        tmp_path, pretrained_h5, digits_train, head={}, freeze="base", training={"epochs": 2}
    )
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    process = context.Process(target=run_in_child, args=(request.to_dict(), events))

    process.start()
    messages = _drain(events, process)

    assert process.exitcode == 0
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "phase" and kinds[-1] == "result" and kinds.count("result") == 1
    assert [m["phase"] for m in messages if m["type"] == "phase"] == [
        "loading",
        "training",
        "exporting",
    ]
    assert [(m["epoch"], m["epochs"]) for m in messages if m["type"] == "epoch"] == [(1, 2), (2, 2)]
    outcome = messages[-1]["outcome"]
    assert outcome["class_names"] == ["0", "1", "2"]
    assert len(outcome["history"]) == 2
    assert (tmp_path / "out" / "saved_model" / "saved_model.pb").is_file()
    assert (tmp_path / "out" / "model.keras").is_file()


def test_user_error_becomes_one_error_message_with_its_code(tmp_path: Path) -> None:
    garbage = tmp_path / "model.h5"
    garbage.write_bytes(b"nonsense")
    request = make_request(tmp_path, garbage, tmp_path)
    events = Recorder()

    run_in_child(request.to_dict(), events)

    (error,) = events.of_type("error")
    assert events.messages[-1] is error
    assert error["code"] == "invalid_model"
    assert "'model.h5'" in error["message"] and "Traceback" not in error["message"]
    assert "InvalidModel" in error["traceback"]


def test_unexpected_failure_is_internal_and_keeps_the_traceback() -> None:
    events = Recorder()

    run_in_child({"job_id": "x"}, events)  # not a valid request

    (error,) = events.messages
    assert error["code"] == "internal"
    assert "worker's log" in error["message"] and "TypeError" not in error["message"]
    assert "TypeError" in error["traceback"]


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (Incompatible("no"), "incompatible"),
        (MemoryError(), "out_of_memory"),
        (
            tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"),
            "out_of_memory",
        ),
        (RuntimeError("boom"), "internal"),
    ],
)
def test_failures_map_to_job_error_codes(exc: BaseException, code: str) -> None:
    assert describe_failure(exc)[0] == code


def test_importing_the_child_module_does_not_load_tensorflow() -> None:
    # The worker imports it to start the child, and must stay free of TensorFlow.
    code = "import sys, service.trainer.child; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "False"


def test_run_request_ends_with_one_typed_failure_naming_the_field(tmp_path: Path) -> None:
    garbage = tmp_path / "model.h5"
    garbage.write_bytes(b"nonsense")
    sent: list[ChildMessage] = []

    run_request(make_request(tmp_path, garbage, tmp_path), sent.append)

    *progress, failed = sent
    assert progress == [PhaseStarted("loading")]
    assert isinstance(failed, Failed)
    assert (failed.code, failed.field) == ("invalid_model", "base_model.uri")
    assert "InvalidModel" in failed.traceback and "Traceback" not in failed.message


def test_run_request_in_inspect_mode_ends_with_the_findings(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    request = replace(
        make_request(tmp_path, pretrained_keras, digits_train, head={"cut_at": "conv_9"}),
        mode="inspect",
        sampled=True,
    )
    sent: list[ChildMessage] = []

    run_request(request, sent.append)

    (finished,) = sent
    assert isinstance(finished, InspectionFinished)
    assert "no layer named 'conv_9'" in finished.errors["head.cut_at"][0]
    assert finished.report["data"]["train"]["sampled"] is True
