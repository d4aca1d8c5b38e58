"""Each knob of the recipe reaches Keras: read back from the compiled optimizer, loss, head layers
and callbacks, and the learning rate of every step of a real fit, also after a resume."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from service.contract.plan import TrainingPlan
from service.contract.recipe import LABEL_SMOOTHING_LOSSES, OPTIMIZER_OPTIONS
from service.trainer.checkpointing import load_resume_state, restore_weights
from service.trainer.compiling import OPTIMIZERS, SMOOTHABLE_LOSSES, compile_model
from service.trainer.export import export_model
from service.trainer.fitting import FitResult, early_stopping, fit_phases
from service.trainer.loading import load_base_model
from service.trainer.model_safety import check_model_file
from service.trainer.model_surgery import BuiltModel, build_model
from service.trainer.schedules import PhaseLearningRate
from tests.helpers.data import digit_images
from tests.helpers.plans import early_stopping_settings
from tests.trainer.support import InMemoryData, Recorder, job_spec

pytestmark = pytest.mark.slow

#: 48 images in batches of 16: 3 steps per epoch.
IMAGES, BATCH = 48, 16


class RateRecorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Keeps, before every batch, the optimizer's step and the rate it applies at that step."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[int, int, float]] = []  # (phase's fit call, step, rate)
        self.configs: list[dict[str, Any]] = []
        self.optimizers: list[type] = []
        self.losses: list[Any] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.configs.append(self.model.optimizer.get_config())
        self.optimizers.append(type(self.model.optimizer))
        self.losses.append(self.model.loss)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.model.optimizer
        rate = float(optimizer.learning_rate)
        self.steps.append((len(self.configs) - 1, int(optimizer.iterations), rate))


def expected_rate(
    step: int, rate: float, warmup: int, decay: int, kind: str, floor: float
) -> float:
    """The documented formula, written out independently of the trainer's."""
    if step < warmup:
        return rate * (step + 1) / warmup
    t = min(step - warmup, decay) / decay
    if kind == "cosine":
        return floor + (rate - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if kind == "exponential":
        return rate * (floor / rate) ** t
    return rate


def _built(base: Path, **head: Any) -> BuiltModel:
    plan = TrainingPlan.from_spec(job_spec(head={"cut_at": "gap", "hidden_units": [8], **head}))
    assert plan.head is not None
    return build_model(
        load_base_model(base, "auto"),
        image_shape=(32, 32, 3),
        preprocessing="rescale",
        head=plan.head,
        num_classes=3,
        label_mode="categorical",
    )


def _data(count: int = IMAGES) -> InMemoryData:
    images, labels = digit_images([0, 1, 2], count // 3, seed=4)
    return InMemoryData((images.astype("float32"), np.eye(3, dtype="float32")[labels]))


#: Two phases: 3 epochs of 1 warmup epoch + cosine, then the phase's own exponential decay.
RECIPE: dict[str, Any] = {
    "training": {
        "batch_size": BATCH,
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "weight_decay": 1e-4,
        "momentum": 0.9,
        "nesterov": True,
        "clipnorm": 1.0,
        "label_smoothing": 0.1,
        "lr_schedule": {"type": "cosine", "warmup_epochs": 1, "min_learning_rate": 0.001},
        "early_stopping": {"monitor": "loss", "patience": 50, "min_delta": 0.02},
    },
    "freeze": "base",
    "schedule": [
        {"epochs": 3},
        {
            "epochs": 2,
            "learning_rate": 0.01,
            "lr_schedule": {"type": "exponential", "min_learning_rate": 0.0001},
        },
    ],
}


def _fit(
    built: BuiltModel, data: InMemoryData, spec: dict[str, Any], **kwargs: Any
) -> tuple[FitResult, RateRecorder]:
    recorder = RateRecorder()
    result = fit_phases(
        built,
        data,
        TrainingPlan.from_spec(spec),
        Recorder(),
        extra_callbacks=[recorder],
        **kwargs,
    )
    return result, recorder


def _resumed(checkpoint: Path, base: Path, sections: dict[str, Any]) -> RateRecorder:
    """The phases of ``sections`` resumed from ``checkpoint`` on a model built afresh."""
    state = load_resume_state(str(checkpoint))
    built = _built(base, l2=0.001)
    restore_weights(built.model, state)
    _, recorder = _fit(built, _data(), job_spec(**sections), resume=state)
    return recorder


@pytest.fixture(scope="module")
def recipe_run(
    pretrained_keras: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[BuiltModel, FitResult, RateRecorder, Path]:
    """The two-phase RECIPE fitted once, with checkpoints, head.l2 set."""
    keras.utils.set_random_seed(2)
    checkpoints = tmp_path_factory.mktemp("recipe") / "checkpoints"
    built = _built(pretrained_keras, l2=0.001)
    result, recorder = _fit(built, _data(), job_spec(**RECIPE), checkpoint_dir=str(checkpoints))
    return built, result, recorder, checkpoints


def test_the_rate_of_every_step_follows_warmup_then_cosine_then_exponential(
    recipe_run: tuple[BuiltModel, FitResult, RateRecorder, Path],
) -> None:
    _, result, recorder, _ = recipe_run
    steps_per_epoch = math.ceil(IMAGES / BATCH)
    first = [(step, rate) for fit, step, rate in recorder.steps if fit == 0]
    second = [(step, rate) for fit, step, rate in recorder.steps if fit == 1]

    # Each phase's fresh optimizer counts its own steps from 0, one per batch.
    assert [step for step, _ in first] == list(range(3 * steps_per_epoch))
    assert [step for step, _ in second] == list(range(2 * steps_per_epoch))
    warmup, decay = steps_per_epoch, 2 * steps_per_epoch
    for step, rate in first:
        assert rate == pytest.approx(
            expected_rate(step, 0.05, warmup, decay, "cosine", 0.001), rel=1e-5
        ), step
    for step, rate in second:
        assert rate == pytest.approx(
            expected_rate(step, 0.01, 0, 2 * steps_per_epoch, "exponential", 1e-4), rel=1e-5
        ), step
    assert first[0][1] == pytest.approx(0.05 / 3)  # the warmup starts near 0, not at 0
    assert [phase["epochs_run"] for phase in result.phases] == [3, 2]


def test_the_optimizer_and_the_loss_are_compiled_with_the_knobs(
    recipe_run: tuple[BuiltModel, FitResult, RateRecorder, Path],
) -> None:
    _, _, recorder, _ = recipe_run

    assert recorder.optimizers == [keras.optimizers.SGD] * 2  # a fresh one per phase
    for config, loss in zip(recorder.configs, recorder.losses, strict=True):
        assert (config["weight_decay"], config["clipnorm"]) == (1e-4, 1.0)
        assert (config["momentum"], config["nesterov"]) == (0.9, True)
        assert config["learning_rate"]["class_name"] == "PhaseLearningRate"
        assert isinstance(loss, keras.losses.CategoricalCrossentropy)
        assert loss.get_config()["label_smoothing"] == pytest.approx(0.1)


def test_the_head_kernels_carry_the_l2_penalty(
    recipe_run: tuple[BuiltModel, FitResult, RateRecorder, Path],
) -> None:
    built, _, _, _ = recipe_run

    dense = [layer for layer in built.head_layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.name for layer in dense] == ["head_dense_1", "predictions"]
    for layer in dense:
        assert layer.kernel_regularizer.get_config() == {"l2": pytest.approx(0.001)}
    assert len(built.model.losses) == 2  # one penalty per kernel, added to the loss by fit


def test_without_l2_the_head_has_no_regularizer(pretrained_keras: Path) -> None:
    built = _built(pretrained_keras)

    assert all(getattr(layer, "kernel_regularizer", None) is None for layer in built.head_layers)
    assert built.model.losses == []


def test_each_phase_records_what_keras_trained_with(
    recipe_run: tuple[BuiltModel, FitResult, RateRecorder, Path],
) -> None:
    _, result, _, _ = recipe_run
    first, second = (phase["settings"] for phase in result.phases)

    assert first["optimizer"] == {
        "name": "sgd",
        "class": "SGD",
        "weight_decay": 1e-4,
        "momentum": 0.9,
        "nesterov": True,
        "clipnorm": 1.0,
    }
    assert first["learning_rate"] == 0.05 and second["learning_rate"] == 0.01
    assert first["schedule"] == {
        "warmup_steps": 3,
        "decay_steps": 6,
        "decay": "cosine",
        "min_learning_rate": 0.001,
        "steps_per_epoch": 3,
    }
    assert second["schedule"]["decay"] == "exponential"
    assert second["schedule"]["warmup_steps"] == 0
    assert first["loss"] == {"name": "categorical_crossentropy", "label_smoothing": 0.1}
    assert first["early_stopping"] == {"monitor": "loss", "patience": 50, "min_delta": 0.02}
    assert first["head_l2"] == pytest.approx(0.001)
    assert result.phases[0]["lr_schedule"] == {
        "type": "cosine",
        "warmup_epochs": 1,
        "min_learning_rate": 0.001,
    }


def test_a_resumed_phase_continues_its_schedule_at_the_checkpoints_step(
    recipe_run: tuple[BuiltModel, FitResult, RateRecorder, Path], pretrained_keras: Path
) -> None:
    _, _, uninterrupted, checkpoints = recipe_run

    resumed = _resumed(checkpoints / "epoch-00001", pretrained_keras, RECIPE)  # 1 of 3 epochs

    steps_per_epoch = math.ceil(IMAGES / BATCH)
    first = [(step, rate) for fit, step, rate in resumed.steps if fit == 0]
    # The checkpoint kept the optimizer's step: the phase goes on at step 3 of 9, not at 0.
    assert [step for step, _ in first] == list(range(steps_per_epoch, 3 * steps_per_epoch))
    before = {step: rate for fit, step, rate in uninterrupted.steps if fit == 0}
    for step, rate in first:
        assert rate == pytest.approx(before[step], rel=1e-6), step


def test_a_resume_at_another_batch_size_goes_on_at_the_same_point_of_the_phase(
    recipe_run: tuple[BuiltModel, FitResult, RateRecorder, Path], pretrained_keras: Path
) -> None:
    _, _, _, checkpoints = recipe_run
    halved = {**RECIPE, "training": {**RECIPE["training"], "batch_size": BATCH // 2}}

    resumed = _resumed(checkpoints / "epoch-00002", pretrained_keras, halved)  # 2 of 3 epochs

    steps_per_epoch = math.ceil(IMAGES / (BATCH // 2))  # 6, as after an out-of-memory retry
    first = [(step, rate) for fit, step, rate in resumed.steps if fit == 0]
    assert [step for step, _ in first] == list(range(2 * steps_per_epoch, 3 * steps_per_epoch))
    warmup, decay = steps_per_epoch, 2 * steps_per_epoch
    for step, rate in first:
        assert rate == pytest.approx(
            expected_rate(step, 0.05, warmup, decay, "cosine", 0.001), rel=1e-5
        )


def test_a_constant_schedule_without_warmup_keeps_a_plain_rate(pretrained_keras: Path) -> None:
    built = _built(pretrained_keras)
    spec = job_spec(training={"epochs": 1, "batch_size": BATCH}, freeze="base")

    result, recorder = _fit(built, _data(), spec)

    assert recorder.configs[0]["learning_rate"] == pytest.approx(1e-3)
    assert [rate for _, _, rate in recorder.steps] == [pytest.approx(1e-3)] * 3
    assert result.phases[0]["settings"]["schedule"] is None


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        (
            {"optimizer": "sgd", "weight_decay": 0.01, "momentum": 0.8, "nesterov": True},
            {"weight_decay": 0.01, "momentum": 0.8, "nesterov": True, "clipnorm": None},
        ),
        ({"optimizer": "rmsprop", "momentum": 0.5}, {"momentum": 0.5, "weight_decay": None}),
        ({"optimizer": "adamw", "weight_decay": 0.05}, {"weight_decay": 0.05}),
        ({"optimizer": "adamw"}, {"weight_decay": 0.004}),  # Keras's own, not passed
        ({"optimizer": "adam", "clipnorm": 2.5}, {"weight_decay": None, "clipnorm": 2.5}),
        ({"optimizer": "sgd"}, {"momentum": 0.0, "nesterov": False, "weight_decay": None}),
    ],
    ids=["sgd", "rmsprop", "adamw", "adamw-default", "adam-clipnorm", "sgd-defaults"],
)
def test_compile_passes_each_option_to_the_optimizer(
    pretrained_keras: Path, training: dict[str, Any], expected: dict[str, Any]
) -> None:
    built = _built(pretrained_keras)
    plan = TrainingPlan.from_spec(job_spec(training=training))

    compile_model(built.model, plan.training, plan.phases[0].learning_rate)

    assert type(built.model.optimizer) is OPTIMIZERS[training["optimizer"]]
    config = built.model.optimizer.get_config()
    assert {key: config[key] for key in expected} == expected


@pytest.mark.parametrize("loss", LABEL_SMOOTHING_LOSSES)
def test_label_smoothing_reaches_each_loss_that_takes_it(pretrained_keras: Path, loss: str) -> None:
    built = _built(pretrained_keras)
    plan = TrainingPlan.from_spec(job_spec(training={"loss": loss, "label_smoothing": 0.2}))

    compile_model(built.model, plan.training, 1e-3)

    assert built.model.loss.get_config()["label_smoothing"] == pytest.approx(0.2)
    assert type(built.model.loss) is SMOOTHABLE_LOSSES[loss]


def test_the_trainer_builds_every_optimizer_and_loss_the_schema_allows() -> None:
    assert tuple(OPTIMIZERS) == tuple(OPTIMIZER_OPTIONS)
    assert tuple(SMOOTHABLE_LOSSES) == LABEL_SMOOTHING_LOSSES
    for name, options in OPTIMIZER_OPTIONS.items():
        arguments = {"weight_decay": 0.1, "momentum": 0.5, "nesterov": True}
        OPTIMIZERS[name](learning_rate=0.1, **{k: arguments[k] for k in options}, clipnorm=1.0)


def test_early_stopping_takes_min_delta() -> None:
    stopper = early_stopping(early_stopping_settings(min_delta=0.05), True, ["accuracy"])

    assert stopper is not None
    assert abs(stopper.min_delta) == pytest.approx(0.05)


def test_the_schedule_serializes_and_reloads_with_its_model(
    recipe_run: tuple[BuiltModel, FitResult, RateRecorder, Path], tmp_path: Path
) -> None:
    built, _, _, _ = recipe_run
    schedule = PhaseLearningRate(0.05, 3, 6, "cosine", 0.001)
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(rebuilt, PhaseLearningRate)
    assert [float(rebuilt(s)) for s in range(10)] == pytest.approx(
        [float(schedule(s)) for s in range(10)]
    )
    # In this process, where the class is registered, a model.keras holding it round-trips.
    path = tmp_path / "with-schedule.keras"
    built.model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.optimizer.get_config()["learning_rate"], dict)


def test_the_exported_model_loads_with_plain_keras_at_the_rate_reached(
    recipe_run: tuple[BuiltModel, FitResult, RateRecorder, Path], tmp_path: Path
) -> None:
    built, _, recorder, _ = recipe_run
    reached = float(built.model.optimizer.learning_rate)

    export_model(built.model, tmp_path)

    keras_file = tmp_path / "model.keras"
    check_model_file(keras_file, "keras")  # the next job may start from it
    # A fresh interpreter that never imports the service, as a user's would.
    script = (
        "import keras, sys; m = keras.saving.load_model(sys.argv[1]); "
        "print(float(m.optimizer.learning_rate), int(m.optimizer.iterations))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script, str(keras_file)],
        capture_output=True,
        text=True,
        check=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    ).stdout.split()
    assert float(shown[-2]) == pytest.approx(reached, rel=1e-6)
    assert int(shown[-1]) == int(built.model.optimizer.iterations)
    # The live model keeps its schedule.
    assert built.model.optimizer.get_config()["learning_rate"]["class_name"] == (
        "PhaseLearningRate"
    )
    assert recorder.steps  # the run trained
