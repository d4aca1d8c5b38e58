"""Building the model to train: raw-pixel input, preprocessing, cut base, new head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from service.contract.plan import HeadSettings
from service.trainer.errors import Incompatible
from service.trainer.loading import load_base_model
from service.trainer.model_surgery import (
    BuiltModel,
    build_model,
    resolve_cut_layer,
    resolve_image_shape,
    similar_names_hint,
)
from tests.helpers.models import build_tiny_cnn
from tests.helpers.plans import head_settings


def _build(base: keras.Model, head: HeadSettings | None, **options: Any) -> BuiltModel:
    settings: dict[str, Any] = {
        "image_shape": (32, 32, 3),
        "preprocessing": "rescale",
        "head": head,
        "num_classes": 3,
        "label_mode": "categorical",
        **options,
    }
    return build_model(base, **settings)


def test_head_on_flat_features_keeps_base_layers_flat_and_shared(pretrained_keras: Path) -> None:
    base = load_base_model(pretrained_keras)

    built = _build(base, head_settings(cut_at=-2, hidden_units=[16], dropout=0.2))

    names = [layer.name for layer in built.model.layers]
    assert names == [
        "image", "preprocess", "conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2",
        "conv3", "bn3", "relu3", "gap",
        "head_dropout_1", "head_dense_1", "head_dropout_2", "predictions",
    ]  # fmt: skip
    assert built.model.get_layer("conv1") is base.get_layer("conv1")
    assert built.cut_layer == "gap" and built.feature_shape == (32,)
    image = built.model.inputs[0]
    assert (image.name, image.dtype, tuple(image.shape)) == ("image", "float32", (None, 32, 32, 3))
    assert tuple(built.model.outputs[0].shape) == (None, 3)


def test_raw_pixels_are_rescaled_inside_the_model(pretrained_keras: Path) -> None:
    base = load_base_model(pretrained_keras)
    built = _build(base, None, num_classes=5)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")

    np.testing.assert_allclose(
        built.model.predict(pixels, verbose=0), base.predict(pixels / 255.0, verbose=0), atol=1e-5
    )


def test_spatial_features_get_pooling(pretrained_keras: Path) -> None:
    base = load_base_model(pretrained_keras)

    built = _build(base, head_settings(cut_at="relu2", pooling="max"))

    assert built.feature_shape == (16, 16, 16)
    assert isinstance(built.head_layers[0], keras.layers.GlobalMaxPooling2D)
    assert "conv3" not in [layer.name for layer in built.model.layers]
    with pytest.raises(Incompatible, match="pooling is 'none' but the features at 'relu2'"):
        _build(base, head_settings(cut_at="relu2", pooling="none"))


def test_new_layer_names_avoid_kept_base_names() -> None:
    # An earlier job's output as the base: its own "predictions" survives a cut after it.
    base = build_tiny_cnn(num_classes=3)

    built = _build(base, head_settings(cut_at=-1), preprocessing="none")

    assert [layer.name for layer in built.model.layers][-2:] == ["predictions", "predictions_1"]


def test_binary_labels_get_one_sigmoid_unit(pretrained_keras: Path) -> None:
    built = _build(
        load_base_model(pretrained_keras), head_settings(), num_classes=2, label_mode="binary"
    )

    assert built.output_units == 1
    assert built.head_layers[-1].activation.__name__ == "sigmoid"


def test_without_similar_names_the_hint_names_the_first_layers_and_the_count() -> None:
    names = ["input", "conv1", "bn1", "relu1", "pool1", "conv2", "gap"]
    hint = similar_names_hint("block_13_expand", names)
    assert hint == "Its first 5 layers (of 7) are 'input', 'conv1', 'bn1', 'relu1', 'pool1'."
    assert similar_names_hint("block_13_expand", names[:2]) == "Its layers are 'input', 'conv1'."


def test_cut_at_unknown_name_suggests_similar_names(pretrained_keras: Path) -> None:
    base = load_base_model(pretrained_keras)

    with pytest.raises(Incompatible, match=r"no layer named 'relu_2'\. Similar names: 'relu2'"):
        resolve_cut_layer(base, "relu_2")


@pytest.mark.parametrize("index", [14, -15])
def test_cut_at_index_out_of_range_names_the_range(pretrained_keras: Path, index: int) -> None:
    base = load_base_model(pretrained_keras)

    with pytest.raises(Incompatible, match=r"has 14 layers, so use an index from -14 to 13"):
        resolve_cut_layer(base, index)


def test_own_output_must_match_the_class_count(pretrained_keras: Path) -> None:
    with pytest.raises(Incompatible, match=r"outputs 5 classes but the data has 3.*Add a head"):
        _build(load_base_model(pretrained_keras), None)


def test_head_num_classes_must_match_the_data(pretrained_keras: Path) -> None:
    with pytest.raises(Incompatible, match=r"head\.num_classes is 4 but the data has 3 classes"):
        _build(load_base_model(pretrained_keras), head_settings(num_classes=4))


def test_image_size_must_fit_a_fixed_input() -> None:
    fixed = build_tiny_cnn((32, 32, 3))
    free = build_tiny_cnn((None, None, 3))

    assert resolve_image_shape(fixed, None) == (32, 32, 3)
    assert resolve_image_shape(free, (48, 40)) == (48, 40, 3)
    assert resolve_image_shape(build_tiny_cnn((28, 28, 1)), None) == (28, 28, 1)
    with pytest.raises(Incompatible, match=r"image_size is \[64, 64\] but the model takes 32x32"):
        resolve_image_shape(fixed, (64, 64))
    with pytest.raises(Incompatible, match=r"set dataset\.image_size"):
        resolve_image_shape(free, None)


def test_unknown_preprocessing_is_incompatible(pretrained_keras: Path) -> None:
    with pytest.raises(Incompatible, match="preprocessing 'mobilenet_v9' is not supported") as info:
        _build(load_base_model(pretrained_keras), head_settings(), preprocessing="mobilenet_v9")
    assert info.value.field == "dataset.preprocessing"


def test_family_preprocessing_is_built_in(pretrained_keras: Path) -> None:
    built = _build(load_base_model(pretrained_keras), head_settings(), preprocessing="mobilenet_v2")

    layer = built.model.get_layer("preprocess")
    assert isinstance(layer, keras.layers.Rescaling)
    assert (layer.scale, layer.offset) == (1 / 127.5, -1.0)
