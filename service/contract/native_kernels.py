"""Model shapes that crash TensorFlow's oneDNN CPU kernels, found from the stored Keras config.

Measured with TensorFlow 2.21 (oneDNN 3.7.3) on an AVX-512 CPU: training a ``Conv2D`` whose
kernel is 1x1 and whose stride is above 1, where the stride leaves the last row or column of
its input out, with fewer than 16 input channels, at most 16 filters and an output of more than
26x26 positions, kills the process (SIGSEGV, or SIGABRT "double free or corruption") in
oneDNN's ``jit_1x1`` backward-weights kernel. The 1x1 stride-2 shortcut of the mini-Xception
emotion classifier (8 channels of 60x60 into 16 filters) is one. The forward pass is fine, and
so is a frozen layer: only its weights' gradient crashes.

Limiting oneDNN to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``) gives that layer AVX2's kernel, which
works from 6 input channels up and crashes with 4 or fewer; turning oneDNN off
(``TF_ENABLE_ONEDNN_OPTS=0``, TensorFlow's own Eigen kernels) always works and trains the
mini-Xception about 3.6 times slower than AVX2 does. Both are read once, when TensorFlow loads:
the worker starts the trainer child with them.

``find_hazards`` reads a model config as Keras stores it (``model.get_config()`` wrapped in
``class_name``/``config``: the ``config.json`` of a ``.keras`` file, the ``model_config`` of an
``.h5``), Keras 3 or Keras 2, functional or Sequential, nested models included. Keras 3 records
each layer's input shapes; for Keras 2 configs the shapes are worked out from the input's along
the graph, for the common layer types; past a layer it does not know, shapes are unknown and
nothing is reported there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: A tensor's shape without the batch dimension; None where unknown (a variable image size).
Shape = tuple[int | None, ...]

#: The kernel setting that avoids the crash where the layer has this many input channels or more.
AVX2_SAFE_FROM_CHANNELS = 8
#: Turning oneDNN off: TensorFlow's own kernels (always avoids the crash; slower).
ONEDNN_OFF = {"TF_ENABLE_ONEDNN_OPTS": "0"}
#: oneDNN limited to AVX2 instructions (avoids the crash from AVX2_SAFE_FROM_CHANNELS up).
ONEDNN_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2"}

# The trigger's bounds (see the module's docstring): measured, not derived.
_MAX_INPUT_CHANNELS = 15
_MAX_FILTERS = 16
_MIN_OUTPUT_POSITIONS = 26 * 26 + 1

_CONV = {"Conv2D", "Convolution2D"}
_SEPARABLE = {"SeparableConv2D", "SeparableConvolution2D"}
_DEPTHWISE = {"DepthwiseConv2D"}
_POOLING = {"MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D"}
_GLOBAL_POOLING = {
    "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPooling2D", "GlobalMaxPool2D",
}  # fmt: skip
_MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
_MODELS = {"Functional", "Model", "Sequential"}
#: Layers whose output has their input's shape.
_SAME_SHAPE = {
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU",
    "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Rescaling", "Normalization", "Identity", "Masking",
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast", "RandomTranslation",
    "RandomBrightness",
}  # fmt: skip


@dataclass(frozen=True)
class StridedPointwiseConv:
    """A Conv2D of the crashing kind (see the module's docstring).

    Attributes:
        layer: The layer's name (``outer/inner`` inside a nested model).
        input_shape: Its input (height, width, channels); height or width None where the
            model takes any image size.
        filters: Its filters.
        strides: Its (vertical, horizontal) stride.
    """

    layer: str
    input_shape: Shape
    filters: int
    strides: tuple[int, int]

    @property
    def channels(self) -> int:
        """Input channels."""
        channels = self.input_shape[-1]
        assert channels is not None, "a hazard's channels are known"
        return channels

    def describe(self) -> str:
        """For events and messages: the layer and why it is one."""
        height, width, channels = self.input_shape
        size = f"{height}x{width}" if height and width else "any-size"
        return (
            f"{self.layer!r} (Conv2D, 1x1 kernel, strides {self.strides[0]}x{self.strides[1]}, "
            f"{channels} channels of {size} into {self.filters} filters)"
        )


@dataclass(frozen=True)
class KernelSetting:
    """Environment variables for the trainer child that keep a model off a crashing kernel.

    Attributes:
        environment: Variables to set before TensorFlow is imported.
        hazards: The layers that made it needed.
    """

    environment: dict[str, str]
    hazards: tuple[StridedPointwiseConv, ...]

    def describe(self) -> str:
        """For the job's events: what is set and why."""
        variables = ", ".join(f"{k}={v}" for k, v in self.environment.items())
        layers = "; ".join(hazard.describe() for hazard in self.hazards[:3])
        more = f" and {len(self.hazards) - 3} more" if len(self.hazards) > 3 else ""
        return (
            f"The base model has layers that crash TensorFlow's oneDNN CPU kernels when they "
            f"train: {layers}{more}. The trainer runs with {variables}."
        )


def kernel_setting(hazards: Sequence[StridedPointwiseConv]) -> KernelSetting | None:
    """The setting that trains a model with these hazards (None for none).

    AVX2 where every hazard has enough input channels for AVX2's kernel (it is the faster one),
    oneDNN off otherwise.
    """
    if not hazards:
        return None
    avx2 = all(hazard.channels >= AVX2_SAFE_FROM_CHANNELS for hazard in hazards)
    return KernelSetting(dict(ONEDNN_AVX2 if avx2 else ONEDNN_OFF), tuple(hazards))


def find_hazards(model_config: Mapping[str, Any]) -> list[StridedPointwiseConv]:
    """The layers of a stored model config that crash oneDNN when they train (see above).

    Args:
        model_config: ``{"class_name": ..., "config": ...}`` as Keras stores a model.
    """
    hazards: list[StridedPointwiseConv] = []
    _walk_model(model_config, None, "", hazards)
    return hazards


# the graph walk -----------------------------------------------------------------------------


def _walk_model(
    model: Mapping[str, Any],
    inputs: list[Shape | None] | None,
    prefix: str,
    hazards: list[StridedPointwiseConv],
) -> list[Shape | None]:
    """Records the hazards of ``model``; returns its output shapes (None: unknown)."""
    config = model.get("config")
    if model.get("class_name") == "Sequential" or isinstance(config, list):
        layers = config if isinstance(config, list) else _mapping(config).get("layers", [])
        return _walk_sequential(list(layers), inputs, prefix, hazards)
    return _walk_functional(_mapping(config), inputs, prefix, hazards)


def _walk_sequential(
    layers: list[Any],
    inputs: list[Shape | None] | None,
    prefix: str,
    hazards: list[StridedPointwiseConv],
) -> list[Shape | None]:
    shape: Shape | None = inputs[0] if inputs else None
    for layer in layers:
        layer = _mapping(layer)
        config = _mapping(layer.get("config"))
        declared = _declared_input(config)
        if declared is not None:
            shape = declared
        if layer.get("class_name") == "InputLayer":
            continue
        outputs = _apply(layer, [shape], prefix, hazards)
        shape = outputs[0] if outputs else None
    return [shape]


def _walk_functional(
    config: Mapping[str, Any],
    inputs: list[Shape | None] | None,
    prefix: str,
    hazards: list[StridedPointwiseConv],
) -> list[Shape | None]:
    layers = [_mapping(layer) for layer in config.get("layers", [])]
    # (layer name, node index, tensor index) -> shape
    known: dict[tuple[str, int, int], Shape | None] = {}
    input_refs = [_ref(entry) for entry in _refs(config.get("input_layers"))]
    for position, ref in enumerate(input_refs):
        if ref is not None and inputs is not None and position < len(inputs):
            known[ref] = inputs[position]
    for layer in layers:
        name = str(layer.get("name") or _mapping(layer.get("config")).get("name"))
        if layer.get("class_name") == "InputLayer" and (name, 0, 0) not in known:
            known[(name, 0, 0)] = _declared_input(_mapping(layer.get("config")))
    pending = [layer for layer in layers if layer.get("class_name") != "InputLayer"]
    # Stored configs list layers in graph order; a few passes cover any that are not.
    for _ in range(len(pending) + 1):
        waiting = []
        for layer in pending:
            if not _apply_nodes(layer, known, prefix, hazards):
                waiting.append(layer)
        if not waiting or len(waiting) == len(pending):
            break
        pending = waiting
    return [
        known.get(ref) if ref else None for ref in map(_ref, _refs(config.get("output_layers")))
    ]


def _apply_nodes(
    layer: Mapping[str, Any],
    known: dict[tuple[str, int, int], Shape | None],
    prefix: str,
    hazards: list[StridedPointwiseConv],
) -> bool:
    """Applies each of a layer's calls whose inputs are known; False while some are not."""
    name = str(layer.get("name") or _mapping(layer.get("config")).get("name"))
    for node_index, node in enumerate(layer.get("inbound_nodes") or []):
        if (name, node_index, 0) in known:
            continue
        tensors = list(_node_tensors(node))
        if any(ref not in known and shape is None for ref, shape in tensors):
            return False
        shapes = [shape if shape is not None else known[ref] for ref, shape in tensors]
        before = len(hazards)
        outputs = _apply(layer, shapes, prefix, hazards)
        if node_index > 0:  # a shared layer: one report per layer is enough
            del hazards[before:]
        for tensor_index, shape in enumerate(outputs or [None]):
            known[(name, node_index, tensor_index)] = shape
    return True


def _node_tensors(node: Any) -> Iterator[tuple[tuple[str, int, int], Shape | None]]:
    """A call's input tensors: (producer ref, shape where the config records it)."""
    if isinstance(node, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
        yield from _keras_tensors(node.get("args", []))
        return
    for entry in node if isinstance(node, list) else []:  # Keras 2: [[name, node, tensor, kw]]
        ref = _ref(entry)
        if ref is not None:
            yield ref, None


def _keras_tensors(value: Any) -> Iterator[tuple[tuple[str, int, int], Shape | None]]:
    if isinstance(value, Mapping):
        if value.get("class_name") == "__keras_tensor__":
            config = _mapping(value.get("config"))
            ref = _ref(config.get("keras_history"))
            if ref is not None:
                yield ref, _batchless(config.get("shape"))
            return
        for item in value.values():
            yield from _keras_tensors(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _keras_tensors(item)


def _refs(value: Any) -> list[Any]:
    """``input_layers``/``output_layers``: one [name, node, tensor] or a list of them."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [value]
    return list(value) if isinstance(value, list) else []


def _ref(entry: Any) -> tuple[str, int, int] | None:
    if isinstance(entry, list | tuple) and len(entry) >= 3 and isinstance(entry[0], str):
        try:
            return entry[0], int(entry[1]), int(entry[2])
        except (TypeError, ValueError):
            return None
    return None


# one layer --------------------------------------------------------------------------------


def _apply(
    layer: Mapping[str, Any],
    inputs: list[Shape | None],
    prefix: str,
    hazards: list[StridedPointwiseConv],
) -> list[Shape | None]:
    """Records a hazard the layer is; returns its output shapes (None: unknown)."""
    kind = str(layer.get("class_name"))
    config = _mapping(layer.get("config"))
    name = f"{prefix}{layer.get('name') or config.get('name')}"
    if kind in _MODELS:
        return _walk_model(layer, inputs, f"{name}/", hazards)
    shape = inputs[0] if inputs else None
    if shape is None:
        return [None]
    if kind in _MERGE:
        return [shape]
    if kind == "Concatenate":
        return [_concatenated(inputs, int(config.get("axis", -1)))]
    if kind in _SAME_SHAPE:
        return [shape]
    if config.get("data_format") == "channels_first":
        return [None]
    if kind in _CONV:
        hazard = _hazard(name, config, shape)
        if hazard is not None:
            hazards.append(hazard)
        return [_conv_output(config, shape, int(config["filters"]))]
    if kind in _SEPARABLE:
        return [_conv_output(config, shape, int(config["filters"]))]
    if kind in _DEPTHWISE:
        channels = None if shape[-1] is None else shape[-1] * int(config.get("depth_multiplier", 1))
        return [_conv_output(config, shape, channels)]
    if kind in _POOLING:
        return [_pool_output(config, shape)]
    if kind in _GLOBAL_POOLING:
        return [(1, 1, shape[-1]) if config.get("keepdims") else (shape[-1],)]
    return [_other_output(kind, config, shape)]


def _hazard(name: str, config: Mapping[str, Any], shape: Shape) -> StridedPointwiseConv | None:
    if len(shape) != 3:
        return None
    pointwise = _pair(config.get("kernel_size")) == (1, 1)
    if not pointwise or _pair(config.get("dilation_rate", 1)) != (1, 1):
        return None
    if int(config.get("groups", 1)) != 1:
        return None
    strides = _pair(config.get("strides", 1))
    height, width, channels = shape
    filters = int(config["filters"])
    if (
        channels is None
        or max(strides) < 2
        or channels > _MAX_INPUT_CHANNELS
        or filters > _MAX_FILTERS
    ):
        return None
    if height is not None and width is not None:
        # The last row or column is left out, and the output is large enough.
        skips = (height - 1) % strides[0] != 0 or (width - 1) % strides[1] != 0
        positions = math.ceil(height / strides[0]) * math.ceil(width / strides[1])
        if not skips or positions < _MIN_OUTPUT_POSITIONS:
            return None
    return StridedPointwiseConv(name, shape, filters, strides)


def _conv_output(config: Mapping[str, Any], shape: Shape, channels: int | None) -> Shape | None:
    if len(shape) != 3:
        return None
    kernel = _pair(config.get("kernel_size"))
    strides = _pair(config.get("strides", 1))
    dilation = _pair(config.get("dilation_rate", 1))
    padding = str(config.get("padding", "valid")).lower()
    sizes = [
        _window_output(size, k, s, d, padding)
        for size, k, s, d in zip(shape[:2], kernel, strides, dilation, strict=True)
    ]
    return (*sizes, channels)


def _pool_output(config: Mapping[str, Any], shape: Shape) -> Shape | None:
    if len(shape) != 3:
        return None
    pool = _pair(config.get("pool_size", 2))
    strides = _pair(config.get("strides") or pool)
    padding = str(config.get("padding", "valid")).lower()
    sizes = [
        _window_output(size, k, s, 1, padding)
        for size, k, s in zip(shape[:2], pool, strides, strict=True)
    ]
    return (*sizes, shape[2])


def _window_output(
    size: int | None, kernel: int, stride: int, dilation: int, padding: str
) -> int | None:
    if size is None:
        return None
    if padding == "same":
        return math.ceil(size / stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _other_output(kind: str, config: Mapping[str, Any], shape: Shape) -> Shape | None:
    if kind == "Dense":
        return (*shape[:-1], int(config["units"]))
    if kind == "Flatten":
        sizes = list(shape)
        return (math.prod(sizes),) if None not in sizes else (None,)  # type: ignore[arg-type]
    if kind == "Reshape":
        return tuple(int(v) if int(v) > 0 else None for v in config.get("target_shape", []))
    if len(shape) != 3:
        return None
    height, width, channels = shape
    if kind == "ZeroPadding2D":
        (top, bottom), (left, right) = _margins(config.get("padding", 1))
        return (_plus(height, top + bottom), _plus(width, left + right), channels)
    if kind == "Cropping2D":
        (top, bottom), (left, right) = _margins(config.get("cropping", 0))
        return (_plus(height, -top - bottom), _plus(width, -left - right), channels)
    if kind == "UpSampling2D":
        rows, cols = _pair(config.get("size", 2))
        return (_times(height, rows), _times(width, cols), channels)
    if kind == "Resizing":
        return (int(config["height"]), int(config["width"]), channels)
    return None


def _concatenated(inputs: list[Shape | None], axis: int) -> Shape | None:
    if any(shape is None for shape in inputs):
        return None
    shapes = [shape for shape in inputs if shape is not None]
    first = list(shapes[0])
    axis = axis - 1 if axis > 0 else axis  # the stored axis counts the batch dimension
    sizes = [shape[axis] for shape in shapes]
    first[axis] = None if None in sizes else sum(size for size in sizes if size is not None)
    return tuple(first)


# values as configs store them ---------------------------------------------------------------


def _declared_input(config: Mapping[str, Any]) -> Shape | None:
    """An input layer's (or a Keras 2 first layer's) declared shape, batch dimension dropped."""
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return _batchless(config[key])
    return None


def _batchless(value: Any) -> Shape | None:
    if not isinstance(value, list | tuple) or not value:
        return None
    return tuple(None if size is None else int(size) for size in list(value)[1:])


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, list | tuple):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _margins(value: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(value, list | tuple):
        rows, cols = value
        return _pair(rows), _pair(cols)
    return (int(value), int(value)), (int(value), int(value))


def _plus(size: int | None, amount: int) -> int | None:
    return None if size is None else size + amount


def _times(size: int | None, factor: int) -> int | None:
    return None if size is None else size * factor


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
