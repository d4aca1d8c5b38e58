"""Models people have: Sequential, 1/4-channel inputs, scaling inside, several outputs, old .h5.

Each is a tiny real Keras model taken through the service's loader and model building (no fit:
tests/trainer/test_run.py trains; a grayscale model on RGB images is its binary-labels test).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from service.contract.plan import FreezeRule
from service.trainer.errors import Incompatible
from service.trainer.freezing import Freezer
from service.trainer.inspection import inspect
from service.trainer.loading import load_base_model
from service.trainer.model_surgery import BuiltModel, build_model, resolve_image_shape
from tests.helpers.legacy_h5 import ERAS, to_keras2_era
from tests.helpers.models import TINY_CNN_LAYERS, build_tiny_cnn
from tests.helpers.plans import head_settings, training_plan
from tests.trainer.support import make_request


def _sequential(channels: int = 3) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.Input((32, 32, channels)),
            keras.layers.Conv2D(4, 3, name="c1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ReLU(name="r1"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="seq",
    )


def _build(base: keras.Model, preprocessing: str = "none", **head: object) -> BuiltModel:
    return build_model(
        base,
        image_shape=resolve_image_shape(base, None),
        preprocessing=preprocessing,
        head=head_settings(**head),
        num_classes=2,
        label_mode="categorical",
    )


def test_sequential_base_counts_from_its_first_layer_and_nests_too() -> None:
    built = _build(_sequential(), cut_at="r1")
    freezing = Freezer(built).apply(FreezeRule("first_n", 2))
    assert freezing.frozen_layers == ["c1", "bn1"]  # a Sequential model lists no InputLayer

    inputs = keras.Input((32, 32, 3), name="image_in")
    outer = keras.Model(inputs, _sequential()(inputs))
    nested = _build(outer, cut_at="seq/r1")
    freezing = Freezer(nested).apply(FreezeRule("until", "bn1"))
    assert freezing.frozen_layers == ["image_in", "seq/c1", "seq/bn1"]


def test_grayscale_model_is_fed_one_channel_and_four_channels_are_refused() -> None:
    assert resolve_image_shape(_sequential(1), None) == (32, 32, 1)
    with pytest.raises(Incompatible, match="takes images with 4 channels; the service feeds RGB"):
        resolve_image_shape(_sequential(4), None)


def _scaling_inside() -> keras.Model:
    inputs = keras.Input((32, 32, 3), name="input")
    x = keras.layers.Rescaling(1 / 255, name="own_rescaling")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(
        keras.layers.GlobalAveragePooling2D(name="gap")(x)
    )
    return keras.Model(inputs, outputs)


def test_a_model_that_scales_its_input_is_not_scaled_twice_by_auto() -> None:
    assert (
        training_plan(dataset={"train": "s3://data/t/", "preprocessing": "auto"}).data.preprocessing
        == "none"
    )
    built = _build(_scaling_inside(), "none", cut_at="gap")
    scaling = [layer for layer in built.model.layers if isinstance(layer, keras.layers.Rescaling)]
    assert [layer.name for layer in scaling] == ["own_rescaling"]


def test_asking_for_preprocessing_on_top_of_the_models_own_is_a_dry_run_warning(
    tmp_path: Path, digits_train: Path
) -> None:
    base = tmp_path / "scaling.keras"
    _scaling_inside().save(base)
    found = inspect(
        make_request(tmp_path, base, digits_train, head={}, dataset={"preprocessing": "rescale"})
    )
    assert found.errors == {}
    (warning,) = [w for w in found.report["warnings"] if "scaled twice" in w]
    assert "dataset.preprocessing is 'rescale'" in warning and "'own_rescaling'" in warning


def _two_outputs() -> keras.Model:
    inputs = keras.Input((32, 32, 3), name="input")
    x = keras.layers.GlobalAveragePooling2D(name="trunk")(keras.layers.Conv2D(4, 3)(inputs))
    age = keras.layers.Dense(1, name="age")(x)
    gender = keras.layers.Dense(2, activation="softmax", name="gender")(x)
    return keras.Model(inputs, [age, gender])


def test_several_outputs_are_refused_naming_them_unless_a_head_cuts_before() -> None:
    base = _two_outputs()
    with pytest.raises(Incompatible, match=r"has 2 outputs \('age', 'gender'\); add a head"):
        build_model(
            base,
            image_shape=(32, 32, 3),
            preprocessing="none",
            head=None,
            num_classes=2,
            label_mode="categorical",
        )
    built = _build(base, cut_at="trunk")
    assert built.model.output_shape == (None, 2)


@pytest.mark.parametrize("era", list(ERAS))
def test_keras2_h5_of_older_eras_loads_with_its_weights(era: str, tmp_path: Path) -> None:
    original = build_tiny_cnn(num_classes=3)
    original.save(tmp_path / "keras3.h5")
    old = to_keras2_era(tmp_path / "keras3.h5", tmp_path / f"{era}.h5", era)

    loaded = load_base_model(old)

    assert [layer.name for layer in loaded.layers] == list(TINY_CNN_LAYERS)
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), original.predict(images, verbose=0), atol=1e-6
    )
    built = _build(loaded, cut_at="relu3")
    assert Freezer(built).apply(FreezeRule("until", "bn2")).frozen_layers == list(
        TINY_CNN_LAYERS[:7]
    )
