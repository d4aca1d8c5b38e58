"""The mini-Xception emotion classifier (face_classification, 2017), rebuilt from its published
architecture, and tiny models with the layer that crashes oneDNN when it trains.

mini-Xception: 64x64x1 grayscale input; two 3x3 Conv2D(8) + BatchNormalization + ReLU; four
residual modules of two SeparableConv2D + BatchNormalization and a 3x3 stride-2 max pooling,
added to a 1x1 stride-2 Conv2D + BatchNormalization shortcut (16, 32, 64, 128 filters); l2(0.01)
kernel regularizers; Conv2D(classes, 3x3) -> global average pooling -> softmax. The first
shortcut (8 channels of 60x60 into 16 filters) is the layer that crashes oneDNN's AVX-512 kernel.

``keras`` is the module to build with: Keras 3 (``keras``) or Keras 2 (``tf_keras``); the
stored config of each is what that era of Keras writes.
"""

from __future__ import annotations

from typing import Any


def mini_xception(
    keras: Any, input_shape: tuple[int, int, int] = (64, 64, 1), classes: int = 7
) -> Any:
    """The untrained model, built with ``keras`` (the keras or tf_keras module)."""
    layers, l2 = keras.layers, keras.regularizers.l2(0.01)

    def separable(filters: int) -> Any:
        return layers.SeparableConv2D(
            filters, (3, 3), padding="same", depthwise_regularizer=l2, pointwise_regularizer=l2,
            use_bias=False,
        )  # fmt: skip

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for _ in range(2):
        x = layers.Conv2D(8, (3, 3), kernel_regularizer=l2, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    for filters in (16, 32, 64, 128):
        residual = layers.Conv2D(filters, (1, 1), strides=(2, 2), padding="same", use_bias=False)(x)
        residual = layers.BatchNormalization()(residual)
        x = separable(filters)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = separable(filters)(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same")(x)
        x = layers.add([x, residual])
    x = layers.Conv2D(classes, (3, 3), padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="mini_XCEPTION")


def strided_pointwise_model(
    keras: Any, size: int = 64, channels: int = 1, filters: int = 8, before: Any = None
) -> Any:
    """Input(size, size, channels) -> [before] -> Conv2D(filters, 1x1, stride 2) -> GAP -> Dense(2).

    At 64x64x1 with 8 filters, training the Conv2D crashes oneDNN's AVX-512 and AVX2 kernels.
    ``before``: a layer to put between the input and the Conv2D.
    """
    inputs = keras.Input((size, size, channels), name="image")
    x = inputs if before is None else before(inputs)
    x = keras.layers.Conv2D(filters, 1, strides=2, name="shortcut")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="strided_pointwise")


def stored_config(model: Any) -> dict[str, Any]:
    """The model's config as a ``.keras`` or ``.h5`` file stores it (JSON round trip)."""
    import json

    return dict(
        json.loads(json.dumps({"class_name": type(model).__name__, "config": model.get_config()}))
    )
