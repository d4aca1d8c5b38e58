"""Training options: preprocessing families, class weights, augmentation, mixed precision."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from service.contract.messages import Info
from service.contract.plan import AugmentationSettings, FreezeRule
from service.contract.preprocessing import FAMILY_MODES
from service.trainer.data import class_weights, load_image_datasets
from service.trainer.errors import Incompatible
from service.trainer.freezing import Freezer
from service.trainer.model_surgery import build_model
from service.trainer.precision import resolve_policy
from service.trainer.preprocessing import preprocessing_layers
from service.trainer.run import train
from tests.helpers.models import build_tiny_cnn
from tests.helpers.plans import head_settings
from tests.trainer.support import Recorder, make_request


@pytest.mark.parametrize("family", sorted(FAMILY_MODES))
def test_family_preprocessing_matches_keras_applications(family: str) -> None:
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    expected = np.asarray(getattr(keras.applications, family).preprocess_input(pixels.copy()))

    got = pixels
    for layer in preprocessing_layers(family):
        got = np.asarray(layer(got))

    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_caffe_preprocessing_is_fixed_and_survives_save_and_a_later_job(tmp_path: Path) -> None:
    built = build_model(
        build_tiny_cnn(),
        image_shape=(32, 32, 3),
        preprocessing="resnet50",
        head=head_settings(cut_at="gap"),
        num_classes=3,
        label_mode="categorical",
    )
    assert not built.model.get_layer("preprocess").trainable
    built.model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        reloaded.predict(pixels, verbose=0), built.model.predict(pixels, verbose=0), atol=1e-6
    )

    # The next job thaws everything; the built-in preprocessing stays fixed.
    chained = build_model(
        reloaded,
        image_shape=(32, 32, 3),
        preprocessing="none",
        head=None,
        num_classes=3,
        label_mode="categorical",
    )
    Freezer(chained).apply(FreezeRule("none", None))
    assert not chained.model.get_layer("preprocess").trainable
    assert chained.model.get_layer("conv1").trainable


def test_torch_and_caffe_modes_need_rgb() -> None:
    with pytest.raises(Incompatible, match="3 RGB channels") as info:
        preprocessing_layers("densenet", channels=1)
    assert info.value.field == "dataset.preprocessing"


def test_class_weights_balanced_named_and_unknown() -> None:
    names, counts = ["a", "b", "c"], {"a": 10, "b": 30, "c": 20}

    assert class_weights(None, names, counts) is None
    assert class_weights("balanced", names, counts) == pytest.approx({0: 2.0, 1: 2 / 3, 2: 1.0})
    assert class_weights({"b": 3.0}, names, counts) == {0: 1.0, 1: 3.0, 2: 1.0}
    with pytest.raises(Incompatible, match="'zebra'") as info:
        class_weights({"zebra": 2.0}, names, counts)
    assert info.value.field == "training.class_weight"


def test_augmentation_changes_training_batches_only(digits_train: Path) -> None:
    def load(augmentation: AugmentationSettings | None) -> tuple[np.ndarray, np.ndarray]:
        data = load_image_datasets(
            digits_train,
            digits_train,
            image_shape=(32, 32, 3),
            batch_size=16,
            label_mode="categorical",
            validation_split=0,
            seed=5,
            augmentation=augmentation,
        )
        assert data.validation is not None
        train_batch = next(iter(data.train))[0].numpy()
        validation_batch = next(iter(data.validation))[0].numpy()
        return train_batch, validation_batch

    flipped = AugmentationSettings(flip="horizontal", rotation=0.05, zoom=0.1)
    plain_train, plain_validation = load(None)
    augmented_train, augmented_validation = load(flipped)
    again_train, _ = load(flipped)

    assert not np.array_equal(plain_train, augmented_train)
    assert np.array_equal(augmented_train, again_train)  # seeded
    assert np.array_equal(plain_validation, augmented_validation)
    assert augmented_train.min() >= 0 and augmented_train.max() <= 255


def test_mixed_precision_auto_is_off_on_a_cpu() -> None:
    assert not tf.config.list_physical_devices("GPU")
    assert resolve_policy("auto") == "float32"
    assert resolve_policy("off") == "float32"
    assert resolve_policy("mixed_bfloat16") == "mixed_bfloat16"


@pytest.mark.slow
def test_run_with_class_weights_augmentation_and_bfloat16(
    tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    report = Recorder()
    request = make_request(
        tmp_path,
        pretrained_keras,
        digits_train,
        head={"cut_at": "gap"},
        freeze={"first_n": 4},
        training={
            "epochs": 1,
            "optimizer": "rmsprop",
            "class_weight": "balanced",
            "augmentation": {"flip": "horizontal", "zoom": 0.1},
            "mixed_precision": "mixed_bfloat16",
        },
    )

    try:
        outcome = train(request, report)
        trained = keras.saving.load_model(tmp_path / "out" / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")

    assert outcome.precision == "mixed_bfloat16"
    assert trained.get_layer("conv2").compute_dtype == "bfloat16"
    assert trained.get_layer("predictions").compute_dtype == "float32"
    names = [layer.name for layer in trained.layers]
    assert not any(name.startswith("random_") for name in names)  # augmentation is not served
    found = next(m for m in report.of_type(Info) if m.message.startswith("Found"))
    assert found.data["class_weight"] == pytest.approx({"0": 1.0, "1": 1.0, "2": 1.0}, rel=0.1)
    serve = tf.saved_model.load(str(tmp_path / "out" / "saved_model")).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.dtype == tf.float32
    assert serve(image=tf.zeros((1, 32, 32, 3)))["output_0"].dtype == tf.float32


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_every_optimizer_trains(
    optimizer: str, tmp_path: Path, pretrained_keras: Path, digits_train: Path
) -> None:
    request = make_request(
        tmp_path,
        pretrained_keras,
        digits_train,
        head={"cut_at": "gap"},
        freeze="base",
        training={"epochs": 1, "optimizer": optimizer},
    )

    outcome = train(request, Recorder())

    assert set(outcome.metrics) >= {"loss", "accuracy"}
