"""The feature cache: where the frozen prefix ends, and training on it changes nothing but time."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from service.contract.messages import CheckpointWritten, EpochEnded, Info
from service.contract.plan import FreezeRule
from service.contract.request import TrainingOutcome
from service.trainer.data import image_datasets, read_dataset
from service.trainer.features import find_frozen_prefix
from service.trainer.fitting import casting_on_device
from service.trainer.freezing import Freezer
from service.trainer.model_surgery import build_model
from service.trainer.run import train
from tests.helpers.models import build_tiny_cnn
from tests.helpers.plans import head_settings
from tests.trainer.support import Recorder, make_request

TWO_PHASES: list[dict[str, Any]] = [
    {"epochs": 2, "learning_rate": 0.003, "freeze": "base"},
    # Only input, conv1 and bn1 stay frozen: too small a prefix, the whole model trains.
    {"epochs": 2, "learning_rate": 0.0005, "freeze": {"first_n": 3}},
]


def _built(base: keras.Model, dropout: float = 0.0) -> Any:
    return build_model(
        base,
        image_shape=(32, 32, 3),
        preprocessing="rescale",
        head=head_settings(cut_at="relu3", dropout=dropout),
        num_classes=3,
        label_mode="categorical",
    )


def test_the_prefix_of_a_frozen_base_ends_where_the_head_trains() -> None:
    built = _built(build_tiny_cnn(), dropout=0.2)
    Freezer(built).apply(FreezeRule("base", None))

    prefix = find_frozen_prefix(built.model)

    assert prefix is not None
    # The head's pooling has nothing to train; its dropout is random in training.
    assert prefix.cut_layers == ("head_pool",)
    assert prefix.share > 0.9


def test_a_trainable_layer_or_a_frozen_dropout_ends_the_prefix() -> None:
    built = _built(build_tiny_cnn())
    freezer = Freezer(built)
    freezer.apply(FreezeRule("until", "pool1"))
    prefix = find_frozen_prefix(built.model)
    assert prefix is not None and prefix.cut_layers == ("pool1",)
    assert prefix.share < 0.5

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Conv2D(4, 3, name="conv_b")(x)
    with_dropout = _built(keras.Model(inputs, keras.layers.ReLU(name="relu3")(x)))
    Freezer(with_dropout).apply(FreezeRule("base", None))
    found = find_frozen_prefix(with_dropout.model)
    assert found is not None and found.cut_layers == ("conv",)  # Dropout runs in fit


def test_a_branched_prefix_has_a_frontier_per_branch() -> None:
    inputs = keras.Input((32, 32, 3))
    left = keras.layers.Conv2D(4, 3, padding="same", name="left")(inputs)
    right = keras.layers.Conv2D(4, 3, padding="same", name="right")(inputs)
    joined = keras.layers.Concatenate(name="join")([left, right])
    top = keras.layers.Conv2D(2, 1, name="top")(joined)
    out = keras.layers.Add(name="relu3")([top, keras.layers.Conv2D(2, 1, name="skip")(left)])
    built = _built(keras.Model(inputs, out))
    Freezer(built).apply(FreezeRule("pattern", "left|right"))

    prefix = find_frozen_prefix(built.model)

    assert prefix is not None and sorted(prefix.cut_layers) == ["join", "left"]


def test_a_nested_base_is_seen_through_by_the_prefix() -> None:
    inner_in = keras.Input((32, 32, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", name="inner_conv")(inner_in)
    y = keras.layers.BatchNormalization(name="inner_bn")(y)
    inner = keras.Model(inner_in, keras.layers.ReLU(name="inner_relu")(y), name="inner")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(2, 1, name="outer_conv")(inner(inputs))
    built = _built(keras.Model(inputs, keras.layers.ReLU(name="relu3")(x)))

    # The built model is flat: the nested model's own layers are frozen and cut at.
    Freezer(built).apply(FreezeRule("pattern", "^inner_"))
    prefix = find_frozen_prefix(built.model)
    assert prefix is not None and prefix.cut_layers == ("inner_relu",)
    assert prefix.share > 0.5

    Freezer(built).apply(FreezeRule("none", None))
    trainable = find_frozen_prefix(built.model)  # the preprocessing alone
    assert trainable is not None and "inner_relu" not in trainable.cut_layers
    assert trainable.share < 0.1


def _run(tmp_path: Path, base: Path, train_dir: Path, validation: Path, **spec: Any) -> Any:
    report = Recorder()
    request = make_request(tmp_path, base, train_dir, validation, **spec)
    request = dataclasses.replace(
        request, checkpoint_dir=str(tmp_path / "checkpoints"), scratch_dir=str(tmp_path / "s")
    )
    return train(request, report), report, request


def _head(outcome_dir: str) -> list[np.ndarray]:
    model = keras.saving.load_model(Path(outcome_dir) / "model.keras", compile=False)
    return [np.asarray(w) for w in model.get_weights()]


def _cache_events(report: Recorder) -> list[dict[str, Any]]:
    return [m.data["feature_cache"] for m in report.of_type(Info) if "feature_cache" in m.data]


def _assert_same_training(
    cached: tuple[TrainingOutcome, Recorder, Any], plain: tuple[TrainingOutcome, Recorder, Any]
) -> None:
    for a, b in zip(_head(cached[2].output_dir), _head(plain[2].output_dir), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert len(cached[0].history) == len(plain[0].history)
    for a, b in zip(cached[0].history, plain[0].history, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


@pytest.mark.slow
def test_a_head_only_job_trains_the_same_with_and_without_the_cache(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path, digits_validation: Path
) -> None:
    spec: dict[str, Any] = {"head": {"cut_at": "gap"}, "freeze": "base"}
    cached = _run(tmp_path / "on", pretrained_keras, digits_train, digits_validation, **spec)
    plain = _run(
        tmp_path / "off",
        pretrained_keras,
        digits_train,
        digits_validation,
        training={"feature_cache": "off"},
        **spec,
    )

    _assert_same_training(cached, plain)
    (event,) = _cache_events(cached[1])
    assert event["cut_layers"] == ["gap"] and event["kept_in"] == {
        "train": "memory",
        "validation": "memory",
    }
    assert event["examples"] == {"train": 120, "validation": 36}
    assert event["bytes"] == {"train": 120 * 32 * 4, "validation": 36 * 32 * 4}
    assert _cache_events(plain[1]) == []
    assert cached[0].metrics == pytest.approx(plain[0].metrics, rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_two_phases_train_the_same_with_and_without_the_cache(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path, digits_validation: Path
) -> None:
    spec: dict[str, Any] = {"head": {"cut_at": "gap"}, "schedule": TWO_PHASES}
    cached = _run(tmp_path / "on", pretrained_keras, digits_train, digits_validation, **spec)
    plain = _run(
        tmp_path / "off",
        pretrained_keras,
        digits_train,
        digits_validation,
        training={"feature_cache": "off"},
        **spec,
    )

    _assert_same_training(cached, plain)
    (event,) = _cache_events(cached[1])  # phase 2's prefix is too small to cache
    assert event["phase_index"] == 0
    assert not list((tmp_path / "on" / "s").glob("*"))  # nothing left behind


@pytest.mark.slow
def test_features_past_the_budget_go_to_disk_and_train_the_same(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path, digits_validation: Path
) -> None:
    spec: dict[str, Any] = {"head": {"cut_at": "gap"}, "freeze": "base"}
    report = Recorder()
    request = make_request(
        tmp_path / "disk", pretrained_keras, digits_train, digits_validation, **spec
    )
    # 0 MB: images and features alike are streamed.
    request = dataclasses.replace(request, data_cache_mb=0, scratch_dir=str(tmp_path / "s"))
    outcome = train(request, report)
    plain = _run(
        tmp_path / "off",
        pretrained_keras,
        digits_train,
        digits_validation,
        training={"feature_cache": "off"},
        **spec,
    )

    (event,) = _cache_events(report)
    assert event["kept_in"] == {"train": "disk", "validation": "disk"}
    assert not list((tmp_path / "s").glob("*"))
    # Streamed images are shuffled before decoding: another order, so only close.
    assert outcome.metrics["loss"] == pytest.approx(plain[0].metrics["loss"], abs=0.2)


@pytest.mark.slow
def test_augmentation_turns_the_cache_off_and_says_so(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    report = Recorder()
    request = make_request(
        tmp_path,
        pretrained_keras,
        digits_train,
        head={"cut_at": "gap"},
        freeze="base",
        training={"epochs": 1, "augmentation": {"flip": "horizontal"}},
    )
    train(request, report)

    (event,) = _cache_events(report)
    assert (event["state"], event["reason"]) == ("off", "augmentation")


@pytest.mark.slow
def test_a_job_resumed_mid_phase_on_the_cache_goes_on_from_its_checkpoint(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path, digits_validation: Path
) -> None:
    spec: dict[str, Any] = {
        "head": {"cut_at": "gap"},
        "freeze": "base",
        "training": {"epochs": 3},
    }
    straight = _run(
        tmp_path / "straight", pretrained_keras, digits_train, digits_validation, **spec
    )
    first = Path(straight[1].of_type(CheckpointWritten)[0].path)
    saved = tmp_path / "saved"
    shutil.copytree(first, saved)

    report = Recorder()
    request = make_request(
        tmp_path / "resumed", pretrained_keras, digits_train, digits_validation, **spec
    )
    request = dataclasses.replace(request, resume_from=str(saved))
    resumed = train(request, report)

    assert [m.epoch for m in report.of_type(EpochEnded)] == [2, 3]
    assert resumed.history[0] == straight[0].history[0]
    assert len(_cache_events(report)) == 1
    assert resumed.metrics["loss"] == pytest.approx(straight[0].metrics["loss"], abs=0.15)
    # The checkpoint holds the whole model (base and head), as without the cache.
    with np.load(saved / "model.weights.npz") as weights:
        assert len(weights.files) == len(_head(straight[2].output_dir))


@pytest.mark.slow
def test_uint8_pixels_cast_in_the_model_train_the_same_as_float_pixels(digits_train: Path) -> None:
    examples = read_dataset(digits_train, "image_folder", "train")
    weights = {}
    for feed in ("float32", "uint8"):
        keras.utils.set_random_seed(0)
        data = image_datasets(
            examples, None, image_shape=(32, 32, 3), batch_size=16, label_mode="categorical", seed=0
        )
        built = _built(build_tiny_cnn())
        model, train_batches = built.model, data.train
        if feed == "uint8":
            model, train_batches = casting_on_device(built.model), data.uint8_train
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        model.fit(train_batches, epochs=1, verbose=0)
        weights[feed] = built.model.get_weights()

    for a, b in zip(weights["float32"], weights["uint8"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_inference_pass_takes_larger_batches_where_the_images_are_small() -> None:
    from service.trainer.features import (
        INFERENCE_BATCH_PIXELS,
        MAX_INFERENCE_BATCH,
        inference_batch_size,
    )

    assert inference_batch_size((96, 96, 3), 32) == INFERENCE_BATCH_PIXELS // (96 * 96) == 128
    assert inference_batch_size((32, 32, 1), 16) == MAX_INFERENCE_BATCH
    assert inference_batch_size((224, 224, 3), 32) == 32  # never below training's batch
    assert inference_batch_size((None, None, 3), 8) == 8
