"""The child-process boundary: typed messages, exactly one final message, nothing raised."""

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

from service.contract.messages import (
    ChildMessage,
    EpochEnded,
    Failed,
    InspectionFinished,
    PhaseStarted,
    TrainingFinished,
    is_final,
)
from service.trainer.child import describe_failure, run_request
from service.trainer.errors import Incompatible, OutOfMemory
from tests.helpers.small_disk import small_tmpfs
from tests.trainer.support import Recorder, make_request

pytestmark = pytest.mark.slow

#: The second phase freezes up to a layer the tiny CNN does not have.
SCHEDULE_WITH_A_BAD_RULE = [
    {"epochs": 1, "freeze": "base"},
    {"epochs": 1, "freeze": {"until": "conv9"}},
]


def _drain(events: Any, process: multiprocessing.process.BaseProcess) -> list[ChildMessage]:
    """Every message until the final one (the queue must be read before join)."""
    messages: list[ChildMessage] = []
    while not messages or not is_final(messages[-1]):
        try:
            messages.append(events.get(timeout=120))
        except queue.Empty:
            pytest.fail(f"no final message; child exit code {process.exitcode}: {messages}")
    process.join(timeout=60)
    return messages


def _garbage_model(tmp_path: Path) -> Path:
    garbage = tmp_path / "model.h5"
    garbage.write_bytes(b"nonsense")
    return garbage


def test_spawned_child_sends_phases_epochs_and_one_outcome(
    tmp_path: Path, pretrained_h5: Path, digits_train: Path
) -> None:
    request = make_request(
        tmp_path, pretrained_h5, digits_train, head={}, freeze="base", training={"epochs": 2}
    )
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    process = context.Process(target=run_request, args=(request, events.put))

    process.start()
    messages = _drain(events, process)

    assert process.exitcode == 0
    assert [m.phase for m in messages if isinstance(m, PhaseStarted)] == [
        "loading",
        "training",
        "exporting",
    ]
    assert messages[0] == PhaseStarted("loading")
    assert [(m.epoch, m.epochs) for m in messages if isinstance(m, EpochEnded)] == [(1, 2), (2, 2)]
    assert [is_final(m) for m in messages].count(True) == 1
    finished = messages[-1]
    assert isinstance(finished, TrainingFinished)
    assert finished.outcome.class_names == ["0", "1", "2"]
    assert len(finished.outcome.history) == 2
    assert (tmp_path / "out" / "saved_model" / "saved_model.pb").is_file()
    assert (tmp_path / "out" / "model.keras").is_file()


def test_user_error_ends_with_one_failure_naming_code_and_field(tmp_path: Path) -> None:
    sent = Recorder()

    run_request(make_request(tmp_path, _garbage_model(tmp_path), tmp_path), sent)

    assert sent.messages[:-1] == [PhaseStarted("loading")]
    (failed,) = sent.of_type(Failed)
    assert sent.messages[-1] is failed
    assert (failed.code, failed.field) == ("invalid_model", "base_model.uri")
    assert "'model.h5'" in failed.message and "Traceback" not in failed.message
    assert "InvalidModel" in failed.traceback


def test_unexpected_failure_is_internal_keeps_the_traceback_and_is_not_raised(
    tmp_path: Path,
) -> None:
    sent: list[ChildMessage] = []

    def send(message: ChildMessage) -> None:
        if not sent and not is_final(message):
            sent.append(message)
            raise RuntimeError("the pipe broke")
        sent.append(message)

    run_request(make_request(tmp_path, _garbage_model(tmp_path), tmp_path), send)

    first, failed = sent
    assert first == PhaseStarted("loading")
    assert isinstance(failed, Failed)
    assert (failed.code, failed.field) == ("internal", None)
    assert "worker's log" in failed.message and "RuntimeError" not in failed.message
    assert "the pipe broke" in failed.traceback


def test_inspect_mode_collects_every_field_error_in_one_run(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    request = make_request(
        tmp_path,
        pretrained_keras,
        digits_train,
        dataset={"image_size": [64, 64], "validation_split": 0},
        head={"cut_at": "gap", "num_classes": 5},
        training={
            "class_weight": {"zebra": 2.0},
            "metrics": ["accuracy", "no_such_metric"],
            "early_stopping": {"monitor": "val_loss"},
        },
        schedule=SCHEDULE_WITH_A_BAD_RULE,
    )
    sent = Recorder()

    run_request(replace(request, mode="inspect", sampled=True), sent)

    (finished,) = sent.messages
    assert isinstance(finished, InspectionFinished)
    errors = finished.errors
    assert set(errors) == {
        "dataset.image_size",
        "head.num_classes",
        "training.class_weight",
        "training.metrics",
        "schedule.1.freeze.until",
    }
    assert "the model takes 32x32" in errors["dataset.image_size"][0]
    assert (
        "head.num_classes is 5 but the data has 3 classes (0, 1, 2)"
        in (errors["head.num_classes"][0])
    )
    assert "no layer named 'conv9'" in errors["schedule.1.freeze.until"][0]
    # It went on at the model's own size and the data's class count, as far as it could.
    report = finished.report
    assert report["image_shape"] == [32, 32, 3] and report["output_units"] == 3
    assert [phase["index"] for phase in report["phases"]] == [0]
    assert report["warnings"] == [
        "There is no validation data, so early stopping monitors 'loss' instead of 'val_loss'."
    ]
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_train_mode_stops_at_the_first_problem_before_training(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    request = make_request(
        tmp_path,
        pretrained_keras,
        digits_train,
        head={"cut_at": "gap", "num_classes": 5},
        schedule=SCHEDULE_WITH_A_BAD_RULE,
    )
    sent = Recorder()

    run_request(request, sent)

    (failed,) = sent.of_type(Failed)
    assert (failed.code, failed.field) == ("incompatible", "head.num_classes")
    assert sent.of_type(EpochEnded) == []
    assert not (tmp_path / "out").exists()


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
        (OSError(28, "No space left on device"), "disk_full"),
    ],
)
def test_failures_map_to_job_error_codes(exc: BaseException, code: str) -> None:
    assert describe_failure(exc)[0] == code


def test_tensorflows_write_to_a_full_disk_is_disk_full_not_out_of_memory(tmp_path: Path) -> None:
    # TensorFlow reports ENOSPC as a ResourceExhaustedError, its class for an allocator out of
    # memory too; a real small tmpfs makes it say so.
    with (
        small_tmpfs(tmp_path / "disk", 1024**2) as disk,
        pytest.raises(tf.errors.ResourceExhaustedError) as caught,
    ):
        tf.io.write_file(str(disk / "big"), tf.constant(b"\0" * 2 * 1024**2))
    assert describe_failure(caught.value)[0] == "disk_full"
    wrapped = OutOfMemory("ran out of memory in phase 1")
    wrapped.__cause__ = caught.value  # how fitting.py raised it before
    assert describe_failure(wrapped)[0] == "disk_full"


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
