"""Whole training runs in-process: a really pretrained tiny CNN fine-tuned on digit images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from service.contract.messages import EpochEnded, Info, PhaseStarted
from service.contract.plan import FreezeRule
from service.contract.request import TrainingOutcome, TrainingRequest
from service.trainer.errors import Incompatible, InvalidDataset
from service.trainer.fitting import early_stopping, early_stopping_monitor
from service.trainer.freezing import Freezer
from service.trainer.loading import load_base_model
from service.trainer.model_surgery import build_model
from service.trainer.run import train
from tests.helpers.data import write_image_folder
from tests.helpers.models import batch_norm_state, build_tiny_cnn
from tests.helpers.plans import early_stopping_settings, head_settings
from tests.trainer.support import Recorder, make_request

pytestmark = pytest.mark.slow


@dataclass
class Run:
    """A finished training run."""

    request: TrainingRequest
    outcome: TrainingOutcome
    report: Recorder

    @property
    def out(self) -> Path:
        return Path(self.request.output_dir)

    def trained(self) -> keras.Model:
        return keras.saving.load_model(self.out / "model.keras", compile=False)


def _run(tmp_path: Path, base: Path, train_dir: Path, validation: Path | None, **spec: Any) -> Run:
    report = Recorder()
    request = make_request(tmp_path, base, train_dir, validation, **spec)
    return Run(request, train(request, report), report)


def _weights(model: keras.Model, name: str) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_layer(name).get_weights()]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _pixels(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            images.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


@pytest.fixture(scope="module")
def head_run(
    tmp_path_factory: pytest.TempPathFactory,
    pretrained_keras: Path,
    digits_train: Path,
    digits_validation: Path,
) -> Run:
    """New head on 'gap', the base frozen up to 'relu2', 3 epochs, validation folder."""
    return _run(
        tmp_path_factory.mktemp("head_run"),
        pretrained_keras,
        digits_train,
        digits_validation,
        head={"hidden_units": [16], "dropout": 0.2},
        freeze={"until": "relu2"},
        training={"epochs": 3, "learning_rate": 3e-3},
    )


def test_outcome_describes_the_run(head_run: Run) -> None:
    outcome = head_run.outcome

    assert outcome.class_names == ["0", "1", "2"]
    assert outcome.input_shape == [32, 32, 3]
    assert [(h["epoch"], h["phase"]) for h in outcome.history] == [(1, 0), (2, 0), (3, 0)]
    last = {k: v for k, v in outcome.history[-1].items() if k not in ("epoch", "phase")}
    assert outcome.metrics == last
    assert set(last) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # conv3, bn3 (gamma, beta), head_dense_1 and predictions: kernel and bias each
    assert outcome.trainable_weights == 8
    assert outcome.versions == {"tensorflow": tf.__version__, "keras": keras.__version__}
    assert set(outcome.timings) == {"loading", "training", "exporting", "evaluating"}
    assert TrainingOutcome.from_dict(outcome.to_dict()) == outcome


def test_messages_report_phases_and_every_epoch(head_run: Run) -> None:
    report = head_run.report

    assert [m.phase for m in report.of_type(PhaseStarted)] == ["loading", "training", "exporting"]
    epochs = report.of_type(EpochEnded)
    assert [(m.epoch, m.epochs, m.phase_index) for m in epochs] == [
        (1, 3, 0),
        (2, 3, 0),
        (3, 3, 0),
    ]
    assert epochs[-1].metrics == head_run.outcome.metrics
    infos = {m.message.split(" ")[0]: m.data for m in report.of_type(Info)}
    assert infos["Found"]["class_names"] == ["0", "1", "2"]
    assert infos["Model"]["cut_layer"] == "gap"
    assert infos["Phase"]["frozen_batch_norms"] == ["bn1", "bn2"]
    assert infos["Phase"]["freeze"] == {"until": "relu2"}


def test_only_unfrozen_layers_changed(head_run: Run, pretrained_keras: Path) -> None:
    base = keras.saving.load_model(pretrained_keras, compile=False)
    trained = head_run.trained()

    for name in ("conv1", "bn1", "conv2", "bn2"):
        assert _same(_weights(trained, name), _weights(base, name)), name
    for name in ("conv3", "bn3"):
        assert not _same(_weights(trained, name), _weights(base, name)), name
    assert [layer.name for layer in trained.layers][:3] == ["image", "preprocess", "conv1"]


def test_saved_model_serves_raw_pixels_as_trained(head_run: Run, digits_validation: Path) -> None:
    images, labels = _pixels(digits_validation, head_run.outcome.class_names)
    loaded = tf.saved_model.load(str(head_run.out / "saved_model"))
    serve = loaded.signatures["serving_default"]

    (spec,) = serve.structured_input_signature[1].values()
    assert list(serve.structured_input_signature[1]) == ["image"]
    assert (spec.dtype, spec.shape.as_list()) == (tf.float32, [None, 32, 32, 3])
    probabilities = serve(image=tf.constant(images))["output_0"].numpy()
    assert probabilities.shape == (len(images), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # No training/serving skew: the served model scores the validation folder as fit did.
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    assert accuracy == pytest.approx(head_run.outcome.metrics["val_accuracy"], abs=1e-6)
    np.testing.assert_allclose(
        probabilities, head_run.trained().predict(images, verbose=0), atol=1e-5
    )


def test_exported_model_is_a_base_for_the_next_job(head_run: Run) -> None:
    base = load_base_model(head_run.out / "model.keras")
    built = build_model(
        base,
        image_shape=(32, 32, 3),
        preprocessing="none",  # the exported model rescales inside already
        head=head_settings(cut_at="head_dense_1"),
        num_classes=4,
        label_mode="categorical",
    )

    summary = Freezer(built).apply(FreezeRule("until", "conv2"))

    names = [layer.name for layer in built.model.layers]
    assert names[:3] == ["image", "preprocess", "conv1"]
    assert names[-2:] == ["head_dense_1", "predictions"]
    # BatchNormalization frozen by the earlier job stays frozen in this one.
    assert summary.frozen_batch_norms == ["bn1", "bn2"]


def test_two_phase_schedule_keeps_batch_norm_frozen(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    run = _run(
        tmp_path,
        pretrained_keras,
        digits_train,
        None,
        head={},
        schedule=[
            {"epochs": 1, "learning_rate": 1e-2, "freeze": "base"},
            {"epochs": 1, "learning_rate": 1e-3, "freeze": "none"},
        ],
    )

    base = keras.saving.load_model(pretrained_keras, compile=False)
    trained = run.trained()
    assert [(h["epoch"], h["phase"]) for h in run.outcome.history] == [(1, 0), (2, 1)]
    epochs = run.report.of_type(EpochEnded)
    assert [(m.epoch, m.epochs, m.phase_index) for m in epochs] == [(1, 2, 0), (2, 2, 1)]
    phases = [m.data for m in run.report.of_type(Info) if "phase_index" in m.data]
    assert [p["frozen_layers"] == [] for p in phases] == [False, True]
    assert [p["frozen_batch_norms"] for p in phases] == [["bn1", "bn2", "bn3"]] * 2
    for name, state in batch_norm_state(base).items():
        assert _same(_weights(trained, name), state), name
    for name in ("conv1", "conv2", "conv3"):
        assert not _same(_weights(trained, name), _weights(base, name)), name


def test_batch_norm_that_is_never_frozen_does_update(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    run = _run(tmp_path, pretrained_keras, digits_train, None, head={}, training={"epochs": 1})

    trained, base = run.trained(), keras.saving.load_model(pretrained_keras, compile=False)
    for name in ("bn1", "bn2", "bn3"):
        assert not _same(_weights(trained, name), _weights(base, name)), name


def test_seeded_run_repeats_exactly(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    spec: dict[str, Any] = {
        "head": {"dropout": 0.3},
        "freeze": {"first_n": 4},
        "training": {
            "epochs": 2,
            "seed": 7,
            "class_weight": "balanced",
            "augmentation": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1},
        },
    }

    first = _run(tmp_path / "a", pretrained_keras, digits_train, None, **spec)
    second = _run(tmp_path / "b", pretrained_keras, digits_train, None, **spec)

    assert first.outcome.history == second.outcome.history  # exactly, every metric
    assert first.outcome.metrics == second.outcome.metrics
    assert _same(first.trained().get_weights(), second.trained().get_weights())


def test_own_output_with_sparse_labels_and_early_stopping(
    tmp_path: Path, pretrained_keras: Path
) -> None:
    # The base's own 5 outputs fit 5 classes; no head.
    five = write_image_folder(tmp_path / "five", ["5", "6", "7", "8", "9"], 16, seed=5)

    run = _run(
        tmp_path,
        pretrained_keras,
        five,
        None,
        training={
            "epochs": 5,
            "learning_rate": 3e-2,
            "loss": "sparse_categorical_crossentropy",
            "early_stopping": {"monitor": "val_loss", "patience": 1},
        },
    )

    history, outcome = run.outcome.history, run.outcome
    assert outcome.restored_epoch is not None
    best = min(history, key=lambda h: h["val_loss"])
    assert outcome.restored_epoch == best["epoch"]
    assert outcome.metrics == {k: v for k, v in best.items() if k not in ("epoch", "phase")}
    assert [layer.name for layer in run.trained().layers][-1] == "predictions"


def test_binary_labels_on_a_grayscale_model(tmp_path: Path) -> None:
    base = tmp_path / "gray.keras"
    build_tiny_cnn((32, 32, 1), num_classes=2).save(base)
    two = write_image_folder(tmp_path / "two", ["cat", "dog"], 12, seed=9)

    run = _run(
        tmp_path,
        base,
        two,
        None,
        head={"cut_at": "relu3", "pooling": "max"},
        training={"epochs": 1, "loss": "binary_crossentropy"},
    )

    serve = tf.saved_model.load(str(run.out / "saved_model")).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, 32, 32, 1]
    scores = serve(image=tf.zeros((2, 32, 32, 1)))["output_0"].numpy()
    assert scores.shape == (2, 1) and np.all((scores >= 0) & (scores <= 1))
    assert set(run.outcome.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_early_stopping_without_validation_watches_the_training_metric() -> None:
    settings = early_stopping_settings(monitor="val_accuracy")

    stopper = early_stopping(settings, False, ["accuracy"])
    monitor, notice = early_stopping_monitor(settings, False, ["accuracy"])

    assert stopper is not None and stopper.monitor == monitor == "accuracy"
    assert notice is not None
    assert "monitors 'accuracy' instead of 'val_accuracy'" in notice.message
    assert early_stopping_monitor(settings, True, ["accuracy"]) == ("val_accuracy", None)
    with pytest.raises(Incompatible, match="monitor 'val_auc' is not a metric this job logs"):
        early_stopping(early_stopping_settings(monitor="val_auc"), True, ["accuracy"])


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ({"head": {"cut_at": "gap_pool"}}, Incompatible, "no layer named 'gap_pool'"),
        ({}, Incompatible, "the model outputs 5 classes but the data has 3 classes"),
        ({"head": {}, "freeze": {"until": "conv9"}}, Incompatible, "freeze.until"),
        (  # a later phase's rule fails before the first phase trains
            {"head": {}, "schedule": [{"epochs": 1}, {"epochs": 1, "freeze": {"until": "x"}}]},
            Incompatible,
            r"schedule\[1\]\.freeze\.until",
        ),
        ({"training": {"loss": "no_such_loss"}}, Incompatible, "not a Keras loss"),
    ],
)
def test_spec_that_does_not_fit_fails_before_training(
    tmp_path: Path,
    pretrained_keras: Path,
    digits_train: Path,
    spec: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    report = Recorder()
    request = make_request(tmp_path, pretrained_keras, digits_train, **spec)

    with pytest.raises(error, match=message):
        train(request, report)
    assert report.of_type(EpochEnded) == []
    assert not (tmp_path / "out").exists()


def test_empty_dataset_is_invalid(tmp_path: Path, pretrained_keras: Path) -> None:
    (tmp_path / "empty").mkdir()
    request = make_request(tmp_path, pretrained_keras, tmp_path / "empty", head={})

    with pytest.raises(InvalidDataset, match=r"dataset\.train: the folder holds no class folders"):
        train(request, Recorder())
