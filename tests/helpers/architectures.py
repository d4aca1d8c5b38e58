"""Weights files of keras.applications architectures, written as Keras publishes them.

No internet here, so the published files cannot be fetched; these writers produce the same
layouts from a model built with ``weights=None``:

- ``write_published_h5``: the layout of the files under
  storage.googleapis.com/tensorflow/keras-applications/ (written by Keras 2's
  ``model.save_weights('x.h5')``): root attributes ``layer_names`` (every layer, in model
  order), ``backend`` and ``keras_version``; one group per layer whose attribute
  ``weight_names`` lists ``<layer>/<weight>:0`` in Keras 2's order (trainable weights, then
  non-trainable), each a dataset at that path inside the layer's group.
- ``write_weights_h5``: Keras 3's own ``model.save_weights('x.weights.h5')``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def build(name: str, size: int = 32, seed: int = 0, **options: Any) -> Any:
    """``keras.applications.<name>(weights=None, ...)`` at ``size`` x ``size``, seeded init."""
    import keras

    keras.utils.set_random_seed(seed)
    include_top = options.pop("include_top", False)
    return getattr(keras.applications, name)(
        weights=None, include_top=include_top, input_shape=(size, size, 3), **options
    )


def perturb(model: Any, seed: int = 1) -> list[np.ndarray]:
    """Gives every weight distinct random values (also BN statistics); returns them, in order."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        shape = tuple(weight.shape)
        value = rng.normal(0.0, 0.05, size=shape).astype(np.float32)
        if "variance" in weight.path:
            value = np.abs(value) + 1.0
        weight.assign(value)
        values.append(value)
    return values


def write_published_h5(model: Any, path: Path, keras_version: str = "2.2.4") -> Path:
    """The model's weights in the layout of Keras's published ``.h5`` weight files."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = keras_version.encode("utf8")
        for layer in model.layers:
            group = handle.create_group(layer.name)
            weights = list(layer.trainable_weights) + list(layer.non_trainable_weights)
            names = [f"{layer.name}/{weight.name}:0".encode() for weight in weights]
            group.attrs["weight_names"] = names
            for name, weight in zip(names, weights, strict=True):
                group.create_dataset(name.decode(), data=np.asarray(weight.numpy()))
    return path


def write_weights_h5(model: Any, path: Path) -> Path:
    """``model.save_weights`` (Keras 3, ``.weights.h5``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)
    return path
