"""Tiny real Keras models for tests: a small Conv2D/BatchNormalization CNN with named layers.

``build_tiny_cnn`` layers (``model.layers``, index: name)::

    0 input, 1 conv1, 2 bn1, 3 relu1, 4 pool1, 5 conv2, 6 bn2, 7 relu2, 8 pool2,
    9 conv3, 10 bn3, 11 relu3, 12 gap, 13 predictions

The model expects pixels scaled to 0-1 (jobs use ``dataset.preprocessing: "rescale"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from tests.helpers.data import digit_images

TINY_CNN_LAYERS = (
    "input",
    "conv1",
    "bn1",
    "relu1",
    "pool1",
    "conv2",
    "bn2",
    "relu2",
    "pool2",
    "conv3",
    "bn3",
    "relu3",
    "gap",
    "predictions",
)


def build_tiny_cnn(
    input_shape: tuple[int | None, int | None, int] = (32, 32, 3),
    num_classes: int = 3,
    name: str = "tiny_cnn",
) -> keras.Model:
    """An untrained functional CNN with the layers listed in this module's docstring."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for block, filters in enumerate((8, 16, 32), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{block}")(x)
        # A quick momentum, so that the moving statistics settle within a short pretraining.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{block}")(x)
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        if block < 3:
            x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def pretrain_tiny_cnn(
    path: Path | None = None,
    digits: Sequence[int] = (5, 6, 7, 8, 9),
    per_class: int = 100,
    epochs: int = 8,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    seed: int = 0,
) -> keras.Model:
    """A tiny CNN trained briefly on digit images (0-1 pixels), so its features are real.

    Pretrain on other digits than the fine-tuning tests use, as a real base model is.

    Args:
        path: Where to save it (``.keras`` or ``.h5``); None to not save.
        digits: The digits it learns to tell apart (its output has one unit per digit).
        per_class: Training images per digit.
        epochs: Training epochs.
        input_shape: (height, width, channels); channels 1 or 3.
        seed: Seeds weights and images.
    """
    keras.utils.set_random_seed(seed)
    images, labels = digit_images(digits, per_class, size=input_shape[0], seed=seed + 1000)
    if input_shape[2] == 1:
        images = images.mean(axis=-1, keepdims=True)
    x = images.astype(np.float32) / 255.0
    y = keras.utils.to_categorical(labels, len(digits))
    model = build_tiny_cnn(input_shape, num_classes=len(digits), name="pretrained_tiny_cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    return model


def batch_norm_state(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Every BatchNormalization layer's weights (gamma, beta, moving mean, moving variance)."""
    return {
        layer.name: [np.array(w) for w in layer.get_weights()]
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
