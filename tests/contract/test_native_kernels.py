"""Finding the layers that crash oneDNN when they train, from real stored Keras configs."""

from __future__ import annotations

from typing import Any

import keras
import pytest

from service.contract.native_kernels import (
    ONEDNN_AVX2,
    ONEDNN_OFF,
    StridedPointwiseConv,
    find_hazards,
    kernel_setting,
)
from tests.helpers.mini_xception import mini_xception, stored_config, strided_pointwise_model


def _layers(config: dict[str, Any]) -> list[tuple[str, tuple[int | None, ...], int]]:
    return [(h.layer, h.input_shape, h.filters) for h in find_hazards(config)]


def test_the_mini_xception_has_one_hazard_its_first_shortcut_and_avx2_trains_it() -> None:
    model = mini_xception(keras)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    shortcut = convs[2]  # two 3x3 convolutions, then the first module's shortcut
    hazards = find_hazards(stored_config(model))
    assert [(h.layer, h.input_shape, h.filters, h.strides) for h in hazards] == [
        (shortcut.name, (60, 60, 8), 16, (2, 2))
    ]
    assert shortcut.kernel_size == (1, 1) and shortcut.strides == (2, 2)
    setting = kernel_setting(hazards)
    assert setting is not None and setting.environment == ONEDNN_AVX2
    assert shortcut.name in setting.describe() and "ONEDNN_MAX_CPU_ISA=AVX2" in setting.describe()


def test_few_channels_need_onednn_off_not_avx2() -> None:
    hazards = find_hazards(stored_config(strided_pointwise_model(keras)))
    assert [(h.layer, h.input_shape) for h in hazards] == [("shortcut", (64, 64, 1))]
    setting = kernel_setting(hazards)
    assert setting is not None and setting.environment == ONEDNN_OFF


@pytest.mark.parametrize(
    ("size", "channels", "filters", "crashes"),
    [
        # Measured with TensorFlow 2.21 on this kind of CPU (see the module's docstring).
        (64, 1, 8, True),
        (64, 15, 8, True),
        (64, 16, 8, False),  # 16 input channels
        (64, 1, 16, True),
        (64, 1, 17, False),  # 17 filters
        (56, 1, 8, True),  # 28x28 out
        (52, 1, 8, False),  # 26x26 out
        (57, 1, 8, False),  # an odd size: the stride reaches the last row and column
    ],
)
def test_the_trigger_bounds(size: int, channels: int, filters: int, crashes: bool) -> None:
    model = strided_pointwise_model(keras, size=size, channels=channels, filters=filters)
    assert bool(find_hazards(stored_config(model))) is crashes


def test_a_model_of_any_image_size_counts_as_a_hazard() -> None:
    model = strided_pointwise_model(keras, size=None)  # type: ignore[arg-type]
    assert _layers(stored_config(model)) == [("shortcut", (None, None, 1), 8)]


def test_hazards_inside_a_nested_model_and_a_sequential_are_found() -> None:
    inner = strided_pointwise_model(keras)
    inputs = keras.Input((64, 64, 1))
    outer = keras.Model(inputs, keras.layers.Dense(3)(inner(inputs)))
    assert _layers(stored_config(outer)) == [("strided_pointwise/shortcut", (64, 64, 1), 8)]
    sequential = keras.Sequential(
        [keras.Input((64, 64, 2)), keras.layers.Conv2D(4, 1, strides=2, name="s2"),
         keras.layers.Flatten()]
    )  # fmt: skip
    assert _layers(stored_config(sequential)) == [("s2", (64, 64, 2), 4)]


@pytest.mark.parametrize(
    ("name", "options"),
    [("ResNet50", {}), ("MobileNetV2", {"alpha": 0.35}), ("MobileNetV3Small", {})],
)
def test_keras_applications_have_no_hazard(name: str, options: dict[str, Any]) -> None:
    # Every keras.applications architecture at 224x224 was checked once (none has one); these
    # three hold 1x1 stride-2 convolutions or few-channel early layers.
    model = getattr(keras.applications, name)(
        weights=None, include_top=False, input_shape=(96, 96, 3), **options
    )
    assert find_hazards(stored_config(model)) == []


def test_no_hazard_no_setting() -> None:
    assert kernel_setting([]) is None
    few = StridedPointwiseConv("a", (64, 64, 4), 8, (2, 2))
    many = StridedPointwiseConv("b", (64, 64, 12), 8, (2, 2))
    assert kernel_setting([many]).environment == ONEDNN_AVX2  # type: ignore[union-attr]
    assert kernel_setting([many, few]).environment == ONEDNN_OFF  # type: ignore[union-attr]
