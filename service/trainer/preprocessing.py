"""The pixel preprocessing a base model expects, as layers built into the trained model.

Built in, so the exported model takes raw 0-255 pixels and serving applies nothing (no
training/serving skew). ``dataset.preprocessing`` is ``none``, ``rescale`` (to 0-1) or the name
of a Keras applications family (FAMILY_MODES), meaning the same as that family's
``keras.applications.<family>.preprocess_input``, as one layer that serializes safely (no Lambda):

- ``tf`` mode, to -1..1: ``Rescaling(1/127.5, offset=-1)``.
- ``torch`` mode, to 0..1 then normalized with the ImageNet mean and std per RGB channel:
  ``Normalization(mean=255*mean, variance=(255*std)**2)``.
- ``caffe`` mode, RGB to BGR then the ImageNet BGR mean subtracted: a fixed, frozen 1x1
  ``Conv2D`` (a channel permutation with the negative mean as bias).
- ``none``: families whose models preprocess inside themselves (EfficientNet, ConvNeXt, ...).

The names and modes are service.contract.preprocessing's; this module builds their layers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from service.contract.preprocessing import FAMILY_MODES, PREPROCESSING_NAMES
from service.trainer.errors import Incompatible

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

#: Names of the built-in preprocessing layers; their weights are fixed, never trained.
FIXED_LAYER_NAME = re.compile(r"^preprocess(_\d+)?$")


def preprocessing_mode(kind: str) -> str:
    """The mode of a ``dataset.preprocessing`` value: none, rescale, tf, torch or caffe.

    Raises:
        Incompatible: ``kind`` is not supported.
    """
    if kind in ("none", "rescale"):
        return kind
    try:
        return FAMILY_MODES[kind]
    except KeyError:
        raise Incompatible(
            f"dataset.preprocessing {kind!r} is not supported; use one of "
            f"{', '.join(PREPROCESSING_NAMES)}.",
            field="dataset.preprocessing",
        ) from None


def is_fixed_preprocessing(layer: Any) -> bool:
    """Whether ``layer`` is a preprocessing layer this module built (kept frozen in later jobs)."""
    return bool(FIXED_LAYER_NAME.match(str(getattr(layer, "name", ""))))


#: Layer classes that scale or normalize pixels, as a base model may apply them to its input.
SCALING_CLASSES = ("Rescaling", "Normalization")


def own_input_scaling(layers: Sequence[Any]) -> list[Any]:
    """The Rescaling and Normalization layers a base applies to its input before anything else.

    Args:
        layers: The base's layers in order (nesting.BaseLayers.layers).
    """
    found = []
    for layer in layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind not in SCALING_CLASSES:
            break
        found.append(layer)
    return found


def preprocessing_layers(kind: str, name: str = "preprocess", channels: int = 3) -> list[Any]:
    """New layers that turn raw pixels into what the base expects (possibly none).

    Args:
        kind: The spec's ``dataset.preprocessing``.
        name: The layer name to use (made unique by the caller).
        channels: Channels of the images (torch and caffe modes need 3, RGB).

    Raises:
        Incompatible: ``kind`` is not supported, or needs RGB images and the model takes others.
    """
    import keras
    import numpy as np

    mode = preprocessing_mode(kind)
    if mode in ("torch", "caffe") and channels != 3:
        raise Incompatible(
            f"dataset.preprocessing {kind!r} normalizes 3 RGB channels but the model takes "
            f"{channels}-channel images; use 'rescale' or 'none'.",
            field="dataset.preprocessing",
        )
    if mode == "none":
        return []
    if mode == "rescale":
        return [keras.layers.Rescaling(1.0 / 255.0, name=name)]
    if mode == "tf":
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=name)]
    if mode == "torch":
        mean = [255.0 * m for m in IMAGENET_MEAN_RGB]
        variance = [(255.0 * s) ** 2 for s in IMAGENET_STD_RGB]
        return [keras.layers.Normalization(mean=mean, variance=variance, name=name)]
    # caffe: out[c] = in[2 - c] - mean_bgr[c], exact in float32.
    layer = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name=name)
    layer.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for out_channel in range(3):
        kernel[0, 0, 2 - out_channel, out_channel] = 1.0
    layer.set_weights([kernel, -np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)])
    return [layer]
