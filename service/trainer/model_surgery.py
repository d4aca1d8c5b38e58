"""Building the model to train: raw-pixel input, preprocessing, the base (cut), a new head.

The base's layers are re-wired into one flat functional model (the same layer objects, so the
same weights), not nested as a single layer: the exported ``model.keras`` then shows every layer
by its own name, and the next job can freeze or cut it by those names. A base that nests a whole
model (Keras's transfer-learning pattern) is flattened too, its inner layers addressed as
service.trainer.nesting describes.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras

from service.contract.plan import HeadSettings
from service.trainer.errors import Incompatible
from service.trainer.nesting import BaseLayers, rename_clashes, run_flat
from service.trainer.preprocessing import preprocessing_layers

INPUT_NAME = "image"
SUPPORTED_CHANNELS = (1, 3)


@dataclass
class BuiltModel:
    """The model to train and where its parts came from.

    Attributes:
        model: A functional model from ``image`` (float32 raw pixels) to class scores.
        base: The loaded base model.
        head_layers: The new layers after the base (never frozen).
        cut_layer: Qualified name of the base layer (or nested model) whose output feeds the
            head; None without a head.
        output_units: Units of the output (num classes, or 1 for binary labels).
        feature_shape: Shape of the features taken from the base, without the batch dimension.
    """

    model: keras.Model
    base: keras.Model
    head_layers: list[keras.layers.Layer] = field(default_factory=list)
    cut_layer: str | None = None
    output_units: int = 0
    feature_shape: tuple[int | None, ...] = ()
    base_layers: BaseLayers | None = None

    @property
    def layers(self) -> BaseLayers:
        """The base's layers as freeze rules address them (nested models seen through)."""
        return self.base_layers if self.base_layers is not None else BaseLayers.of(self.base)


def base_input_shape(base: keras.Model) -> tuple[int | None, int | None, int | None]:
    """The base's (height, width, channels); None where the model accepts any size.

    Raises:
        Incompatible: The model has several inputs or does not take images.
    """
    try:
        inputs = base.inputs
    except (AttributeError, ValueError) as exc:
        raise Incompatible(
            "base_model: the model has no defined input (a subclassed model?); save a functional "
            "or Sequential model whose first layer is keras.Input(shape=(height, width, channels))."
        ) from exc
    if not inputs or len(inputs) != 1:
        raise Incompatible(
            f"base_model: the model has {len(inputs or [])} inputs; the service trains image "
            "classifiers with exactly one image input."
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 4:
        raise Incompatible(
            f"base_model: the model's input has shape {shape}; the service needs images of shape "
            "(batch, height, width, channels)."
        )
    return shape[1], shape[2], shape[3]


def resolve_image_shape(
    base: keras.Model, image_size: tuple[int, int] | None
) -> tuple[int, int, int]:
    """The (height, width, channels) to train at.

    Args:
        base: The base model.
        image_size: The spec's ``dataset.image_size``; None takes the model's own.

    Raises:
        Incompatible: The spec's size contradicts a fixed model input size, neither gives a size,
            or the model takes a channel count other than 1 or 3.
    """
    height, width, channels = base_input_shape(base)
    if channels is None:
        channels = 3
    if channels not in SUPPORTED_CHANNELS:
        raise Incompatible(
            f"base_model: the model takes images with {channels} channels; the service feeds RGB "
            "(3 channels) or grayscale (1 channel) images."
        )
    if image_size is None:
        if height is None or width is None:
            raise Incompatible(
                "base_model accepts images of any size; set dataset.image_size to [height, width].",
                field="dataset.image_size",
            )
        return height, width, channels
    fixed = (height, width)
    if any(m is not None and m != s for m, s in zip(fixed, image_size, strict=True)):
        raise Incompatible(
            f"dataset.image_size is {list(image_size)} but the model takes {height}x{width} "
            f"images. Set dataset.image_size to [{height}, {width}] or leave it out."
        )
    return image_size[0], image_size[1], channels


def check_head_classes(
    head: HeadSettings | None, num_classes: int, class_names: Sequence[str] = ()
) -> None:
    """Raises Incompatible where ``head.num_classes`` is set and differs from the data's count.

    Args:
        head: The new head, if any.
        num_classes: Classes found in the data.
        class_names: Their names, where known (the message shows the first ones).
    """
    if head is None or head.num_classes is None or head.num_classes == num_classes:
        return
    shown = f" ({', '.join(class_names[:10])})" if class_names else ""
    raise Incompatible(
        f"head.num_classes is {head.num_classes} but the data has {num_classes} classes{shown}. "
        "Leave head.num_classes out to use the classes found, or fix the data."
    )


def output_units(label_mode: str, num_classes: int) -> int:
    """Output units the labels need: one sigmoid unit for binary labels, else one per class."""
    return 1 if label_mode == "binary" else num_classes


def resolve_cut_layer(base: keras.Model | BaseLayers, cut_at: int | str) -> keras.layers.Layer:
    """The base layer at ``cut_at``: an index into its layers (negative from the end) or a name.

    Indices follow ``base.layers`` as Keras lists them: a functional model's InputLayer is index 0,
    a Sequential model's first layer is. A nested model's layers count in its place (see
    service.trainer.nesting); a name may be qualified (``outer/inner``) or a nested model's.

    Raises:
        Incompatible: No such layer; the message names the valid range or similar names.
    """
    flat = base if isinstance(base, BaseLayers) else BaseLayers.of(base)
    layers = flat.layers
    if isinstance(cut_at, int):
        if not -len(layers) <= cut_at < len(layers):
            raise Incompatible(
                f"head.cut_at {cut_at} is out of range: the base model has {len(layers)} layers, "
                f"so use an index from {-len(layers)} to {len(layers) - 1}, or a layer name."
            )
        layer = layers[cut_at]
    else:
        try:
            found = flat.find(cut_at)
        except LookupError as exc:
            raise Incompatible(f"head.cut_at: {exc}") from exc
        if found is None:
            raise Incompatible(
                f"head.cut_at: the base model has no layer named {cut_at!r}. "
                f"{similar_names_hint(cut_at, flat.names())}"
            )
        layer = found[1]
    if isinstance(layer, keras.layers.InputLayer):
        raise Incompatible(
            f"head.cut_at {cut_at!r} is the model's input layer; choose a later layer."
        )
    return layer


def build_model(
    base: keras.Model,
    *,
    image_shape: tuple[int, int, int],
    preprocessing: str,
    head: HeadSettings | None,
    num_classes: int,
    label_mode: str,
) -> BuiltModel:
    """Wires raw-pixel input, preprocessing, the base (cut at ``head.cut_at``) and a new head.

    Args:
        base: The loaded base model.
        image_shape: (height, width, channels) of the training images.
        preprocessing: The spec's ``dataset.preprocessing``.
        head: The new head; None keeps the base's own output.
        num_classes: Classes found in the data.
        label_mode: ``categorical``, ``int`` or ``binary`` (see data.label_mode_for_loss).

    Raises:
        Incompatible: The cut layer does not exist, the head's or the model's class count
            differs from the data's, or the features cannot feed a dense head.
    """
    units = output_units(label_mode, num_classes)
    flat = BaseLayers.of(base)
    if flat.has_nested:
        rename_clashes(flat.layers)  # a flat model needs unique names
    cut: keras.layers.Layer | None = None
    if head is not None:
        check_head_classes(head, num_classes)
        cut = resolve_cut_layer(flat, head.cut_at)

    image = keras.Input(shape=image_shape, dtype="float32", name=INPUT_NAME)
    x = image
    base_names = {layer.name for layer in flat.layers}
    for layer in preprocessing_layers(
        preprocessing, _unique("preprocess", base_names), channels=image_shape[2]
    ):
        x = layer(x)
    features = _rewire(base, x, cut)
    feature_shape = tuple(features.shape)

    if head is None or cut is None:
        if len(feature_shape) != 2 or feature_shape[-1] != units:
            binary_note = " (binary labels need 1 output unit)" if label_mode == "binary" else ""
            raise Incompatible(
                f"the model outputs {_describe_units(feature_shape)} but the data has "
                f"{num_classes} classes{binary_note}. Add a head (head: {{}}) to replace the "
                "model's output layer.",
                field="head",
            )
        return BuiltModel(
            _functional(image, features), base, [], None, units, feature_shape[1:], flat
        )

    # New layers get names no kept layer has; a base layer after the cut (an earlier job's
    # "predictions", say) is gone, so its name is free again.
    taken = {layer.name for layer in _functional(image, features).layers}
    cut_name = flat.path(cut)
    head_layers = _head_layers(head, len(feature_shape), units, taken, cut_name)
    y = features
    for layer in head_layers:
        y = layer(y)
    model = _functional(image, y)
    return BuiltModel(model, base, head_layers, cut_name, units, feature_shape[1:], flat)


def similar_names_hint(name: str, names: list[str], count: int = 5) -> str:
    """A sentence naming a few layer names like ``name``, or the first few names."""
    close = difflib.get_close_matches(name, names, n=count, cutoff=0.5)
    if close:
        return "Similar names: " + ", ".join(repr(n) for n in close) + "."
    shown = ", ".join(repr(n) for n in names[:count])
    if len(names) > count:
        return f"Its first {count} layers (of {len(names)}) are {shown}."
    return f"Its layers are {shown}."


def _rewire(
    base: keras.Model, x: keras.KerasTensor, cut: keras.layers.Layer | None
) -> keras.KerasTensor:
    """Runs the base's graph on ``x`` with the same layer objects; returns the cut's output.

    Without a cut it returns the base's output. Unlike calling the base as one layer, this keeps
    the layers flat, nested models' too (nesting.run_flat). The cut layer's output is captured
    as the graph runs (``layer.output`` would not do: a nested model answers with its inner
    graph's output). Layers after the cut run too but end up in no model.
    """
    graph = keras.Model(base.inputs, base.outputs)
    if cut is None and len(graph.outputs) != 1:
        names = ", ".join(repr(t._keras_history.operation.name) for t in graph.outputs)
        raise Incompatible(
            f"base_model: the model has {len(graph.outputs)} outputs ({names}); add a head "
            "(head: {}) to train on one of its layers (head.cut_at names it), or provide a model "
            "with one output."
        )
    captured: list[object] = []

    def seen(layer: keras.layers.Layer, outputs: object) -> None:
        if layer is cut:
            captured.append(outputs)

    outputs = run_flat(graph, [x], seen)
    if cut is None:
        (features,) = keras.tree.flatten(outputs)
        return features
    if not captured:
        raise Incompatible(
            f"head.cut_at: the layer {cut.name!r} is not on the path from the model's input to "
            "its output; cut at another layer."
        )
    if len(captured) > 1:
        raise Incompatible(
            f"head.cut_at: the layer {cut.name!r} is used {len(captured)} times in the model, so "
            "its output is ambiguous; cut at another layer."
        )
    flat = keras.tree.flatten(captured[0])
    if len(flat) != 1:
        raise Incompatible(
            f"head.cut_at: the layer {cut.name!r} has {len(flat)} outputs; cut at a layer with one."
        )
    return flat[0]


def _head_layers(
    head: HeadSettings, feature_rank: int, units: int, taken: set[str], cut_name: str
) -> list[keras.layers.Layer]:
    layers: list[keras.layers.Layer] = []
    if feature_rank == 4:
        pooling = {
            "avg": keras.layers.GlobalAveragePooling2D,
            "max": keras.layers.GlobalMaxPooling2D,
            "flatten": keras.layers.Flatten,
        }.get(head.pooling)
        if pooling is None:
            raise Incompatible(
                f"head.pooling is 'none' but the features at {cut_name!r} are spatial "
                "(height x width x channels); use pooling 'avg', 'max' or 'flatten', or cut at a "
                "layer with flat features."
            )
        layers.append(pooling(name=_unique("head_pool", taken)))
    elif feature_rank != 2:
        if head.pooling != "flatten":
            raise Incompatible(
                f"head.cut_at: the features at {cut_name!r} have rank {feature_rank}; use pooling "
                "'flatten' or cut at a layer with flat or spatial (rank 4) features."
            )
        layers.append(keras.layers.Flatten(name=_unique("head_flatten", taken)))
    for index, hidden in enumerate((*head.hidden_units, None), start=1):
        if head.dropout > 0:
            layers.append(
                keras.layers.Dropout(head.dropout, name=_unique(f"head_dropout_{index}", taken))
            )
        if hidden is None:
            break
        layers.append(
            keras.layers.Dense(
                hidden,
                activation="relu",
                kernel_regularizer=_kernel_regularizer(head.l2),
                name=_unique(f"head_dense_{index}", taken),
            )
        )
    layers.append(
        keras.layers.Dense(
            units,
            activation="sigmoid" if units == 1 else "softmax",
            kernel_regularizer=_kernel_regularizer(head.l2),
            dtype="float32",
            name=_unique("predictions", taken),
        )
    )
    return layers


def _kernel_regularizer(l2: float) -> keras.regularizers.Regularizer | None:
    """``head.l2`` as the head's Dense kernels take it: None where it is 0 (no penalty)."""
    return keras.regularizers.L2(l2) if l2 > 0 else None


def _functional(image: keras.KerasTensor, outputs: keras.KerasTensor) -> keras.Model:
    try:
        return keras.Model(image, outputs, name="finetuned")
    except ValueError as exc:
        raise Incompatible(
            f"base_model: could not build the model to train: {str(exc).splitlines()[0]}"
        ) from exc


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_1``, ``name_2``...: the first not in ``taken`` (which it joins)."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _describe_units(shape: tuple[int | None, ...]) -> str:
    if len(shape) == 2:
        return f"{shape[-1]} classes"
    return f"tensors of shape {shape[1:]} (not one score per class)"
