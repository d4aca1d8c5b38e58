"""The pixel preprocessing a base model expects, as layers built into the trained model.

Built in, so the exported model takes raw 0-255 pixels and serving applies nothing.
Keras applications families (``mobilenet_v2``, ``resnet50``, ...) slot in here later.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from service.trainer.errors import Incompatible


def _rescale(name: str) -> list[keras.layers.Layer]:
    return [keras.layers.Rescaling(1.0 / 255.0, name=name)]


PREPROCESSORS: dict[str, Callable[[str], list[keras.layers.Layer]]] = {
    "none": lambda name: [],
    "rescale": _rescale,
}


def preprocessing_layers(kind: str, name: str = "preprocess") -> list[keras.layers.Layer]:
    """New layers that turn raw pixels into what the base expects (possibly none).

    Args:
        kind: The spec's ``dataset.preprocessing``.
        name: The layer name to use (made unique by the caller).

    Raises:
        Incompatible: ``kind`` is not supported.
    """
    try:
        build = PREPROCESSORS[kind]
    except KeyError:
        raise Incompatible(
            f"dataset.preprocessing {kind!r} is not supported; use one of "
            f"{', '.join(sorted(PREPROCESSORS))}."
        ) from None
    return build(name)
