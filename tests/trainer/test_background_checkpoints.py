"""Checkpoints written off the training thread: in order, complete, and restorable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from service.contract.messages import CheckpointWritten, EpochEnded, Info
from service.contract.plan import TrainingPlan
from service.trainer.checkpointing import (
    load_resume_state,
    restore_optimizer,
    restore_weights,
)
from service.trainer.compiling import compile_model
from service.trainer.errors import TrainerError
from service.trainer.fitting import fit_phases
from service.trainer.loading import load_base_model
from service.trainer.model_surgery import BuiltModel, build_model
from service.trainer.reporting import BackgroundReporter
from tests.helpers.data import digit_images
from tests.helpers.plans import head_settings
from tests.trainer.support import InMemoryData, Recorder, job_spec


def _built(base: Path) -> BuiltModel:
    return build_model(
        load_base_model(base, "auto"),
        image_shape=(32, 32, 3),
        preprocessing="rescale",
        head=head_settings(cut_at="gap", hidden_units=[8]),
        num_classes=3,
        label_mode="categorical",
    )


def _data() -> InMemoryData:
    images, labels = digit_images([0, 1, 2], 16, seed=4)
    return InMemoryData((images.astype("float32"), np.eye(3, dtype="float32")[labels]))


def test_each_checkpoint_is_reported_complete_before_its_epoch(
    tmp_path: Path, pretrained_keras: Path
) -> None:
    keras.utils.set_random_seed(1)
    built = _built(pretrained_keras)
    report = Recorder()
    spec = job_spec(freeze="base", training={"epochs": 3, "batch_size": 8})

    fit_phases(built, _data(), TrainingPlan.from_spec(spec), report, str(tmp_path / "ckpt"))

    ordered = [m for m in report.messages if isinstance(m, CheckpointWritten | EpochEnded)]
    assert [(type(m), m.epoch) for m in ordered] == [
        (kind, k) for k in (1, 2, 3) for kind in (CheckpointWritten, EpochEnded)
    ]
    for message in report.of_type(CheckpointWritten):
        assert {p.name for p in Path(message.path).iterdir()} == {
            "model.weights.npz",
            "optimizer.npz",
            "state.json",
        }
    # The last checkpoint holds the trained weights: a model rebuilt from the base gets them.
    state = load_resume_state(str(tmp_path / "ckpt" / "epoch-00003"))
    assert state.epoch == 3 and [h["epoch"] for h in state.history] == [1, 2, 3]
    rebuilt = _built(pretrained_keras)
    restore_weights(rebuilt.model, state)
    for restored, trained in zip(rebuilt.model.weights, built.model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(trained))
    plan = TrainingPlan.from_spec(spec)
    compile_model(rebuilt.model, plan.training, plan.phases[0].learning_rate)
    for layer in rebuilt.base.layers:  # freeze as the checkpoint's phase did
        layer.trainable = False
    restore_optimizer(rebuilt.model, state)
    assert int(rebuilt.model.optimizer.iterations) == int(built.model.optimizer.iterations)


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path, pretrained_keras: Path) -> None:
    built = _built(pretrained_keras)
    spec = job_spec(freeze="base", training={"epochs": 1, "batch_size": 8})
    fit_phases(built, _data(), TrainingPlan.from_spec(spec), Recorder(), str(tmp_path / "c"))
    state = load_resume_state(str(tmp_path / "c" / "epoch-00001"))
    other = build_model(
        load_base_model(pretrained_keras, "auto"),
        image_shape=(32, 32, 3),
        preprocessing="rescale",
        head=head_settings(cut_at="gap", hidden_units=[4]),
        num_classes=3,
        label_mode="categorical",
    )

    with pytest.raises(TrainerError, match="does not fit the model"):
        restore_weights(other.model, state)


def test_background_reporter_keeps_order_and_raises_a_failed_task() -> None:
    seen: list[Any] = []
    reporter = BackgroundReporter(seen.append)
    reporter.report(Info("one"))
    reporter.submit(lambda: seen.append("written"))
    reporter.report(Info("two"))
    reporter.drain()
    assert seen == [Info("one"), "written", Info("two")]

    def fail() -> None:
        raise OSError("disk full")

    reporter.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        reporter.drain()
    reporter.close()
    assert seen == [Info("one"), "written", Info("two")]
