"""A base model's layers seen through nested models, in one flat order with qualified names.

Keras's transfer-learning guide builds a model around a whole other model used as one layer::

    base = keras.applications.MobileNetV2(include_top=False, weights=None, ...)
    inputs = keras.Input((96, 96, 3))
    x = base(inputs, training=False)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))

For such a model ``model.layers`` lists the nested model as one entry. The service sees through
it: ``BaseLayers`` lists the layers as they are when every nested (functional or Sequential)
model is replaced by its own layers, in its own order, without its InputLayer (the outer tensor
feeds it). A layer inside has a qualified name, the nested models' names and its own joined by
``/`` (``mobilenetv2_0.35_96/block_3_expand``); a layer of the outer model keeps its plain name.

So ``freeze.first_n`` counts flattened layers: the outer InputLayer is 0 and the nested model's
first layer after its input is 1, the same indices as for the nested model saved alone.
``head.cut_at``, ``freeze.until`` and ``freeze.pattern`` take a qualified name, a plain name
where only one layer has it, or the nested model's own name (which stands for its last layer,
that is its output). A pattern matches a layer when it matches its plain or its qualified name.

``run_flat`` runs the base's graph with its inner layers called one by one (the same layer
objects), so the model built from it is flat. The ``training=False`` of the guide's call is not
carried over: Keras 3.15 itself lets ``fit``'s ``training=True`` override it (a nested
BatchNormalization left trainable updates its statistics in Keras's own fit too). What keeps
BatchNormalization in inference mode is freezing it (service.trainer.freezing), as the guide's
``base.trainable = False`` does: once frozen by any phase it stays frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import keras

#: What joins a nested model's name and its layer's in a qualified name.
SEPARATOR = "/"


@dataclass(frozen=True)
class BaseLayers:
    """The flattened layers of a base model (see the module's doc).

    Attributes:
        layers: The layers, flattened, in order.
        paths: Their qualified names, one per layer.
        nested: Each nested model's qualified name -> the index range (start, stop) of its layers.
        models: Each nested model's qualified name -> the model object.
    """

    layers: tuple[keras.layers.Layer, ...]
    paths: tuple[str, ...]
    nested: dict[str, tuple[int, int]]
    models: dict[str, keras.layers.Layer]
    _by_id: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {id(model): path for path, model in self.models.items()}
        by_id.update((id(layer), path) for layer, path in zip(self.layers, self.paths, strict=True))
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def of(cls, model: keras.Model) -> BaseLayers:
        """The flattened layers of ``model``."""
        layers: list[keras.layers.Layer] = []
        paths: list[str] = []
        nested: dict[str, tuple[int, int]] = {}
        models: dict[str, keras.layers.Layer] = {}
        seen: set[int] = set()

        def walk(parent: keras.Model, prefix: str, top: bool) -> None:
            for layer in parent.layers:
                if id(layer) in seen:
                    continue
                seen.add(id(layer))
                if is_nested_model(layer):
                    path = prefix + layer.name
                    start = len(layers)
                    walk(layer, path + SEPARATOR, False)
                    nested[path] = (start, len(layers))
                    models[path] = layer
                elif top or not isinstance(layer, keras.layers.InputLayer):
                    layers.append(layer)
                    paths.append(prefix + layer.name)

        walk(model, "", True)
        return cls(tuple(layers), tuple(paths), nested, models)

    @property
    def has_nested(self) -> bool:
        return bool(self.nested)

    def path(self, layer: keras.layers.Layer) -> str:
        """The qualified name of one of the layers (or of a nested model)."""
        return self._by_id.get(id(layer), str(layer.name))

    def names(self) -> list[str]:
        """Every name a rule may use: the qualified names, then the nested models'."""
        return [*self.paths, *self.nested]

    def find(self, name: str) -> tuple[int, keras.layers.Layer] | None:
        """The last flat index ``name`` covers and the layer (or nested model) it names.

        Raises:
            LookupError: A plain name several layers have; the message lists their paths.
        """
        if name in self.nested:
            _start, stop = self.nested[name]
            return stop - 1, self.models[name]
        if name in self.paths:
            index = self.paths.index(name)
            return index, self.layers[index]
        plain = [i for i, layer in enumerate(self.layers) if layer.name == name]
        plain_models = [path for path, model in self.models.items() if model.name == name]
        if len(plain) + len(plain_models) > 1:
            found = [self.paths[i] for i in plain] + plain_models
            raise LookupError(
                f"{len(found)} layers are named {name!r} ({', '.join(map(repr, found))}); "
                "use one of these qualified names."
            )
        if plain:
            return plain[0], self.layers[plain[0]]
        if plain_models:
            return self.find(plain_models[0])
        return None


def is_nested_model(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` is a functional or Sequential model whose graph the service can run."""
    if not isinstance(layer, keras.Model):
        return False
    try:
        return bool(layer.inputs) and bool(layer.outputs)
    except (AttributeError, ValueError):  # a subclassed model: one layer, not expanded
        return False


def run_flat(
    model: keras.Model,
    inputs: list[keras.KerasTensor],
    seen: Callable[[keras.layers.Layer, object], None],
) -> object:
    """Runs ``model``'s graph on ``inputs``, its nested models' layers called one by one.

    Args:
        model: A functional or Sequential model.
        inputs: One tensor per model input.
        seen: Called with each layer (and each nested model) and what it returned.

    Returns:
        The model's outputs, structured as the model returns them.

    Function._run_through_graph is what keras.models.clone_model uses to re-wire a graph; with
    the identity as operation it reuses each layer object. Keras 3.15 has no public API for it.
    """
    graph = model
    if not hasattr(graph, "_run_through_graph"):  # Sequential: its graph as a functional model
        graph = keras.Model(model.inputs, model.outputs)

    def call(layer: keras.layers.Layer, *args: object, **kwargs: object) -> object:
        if is_nested_model(layer):
            outputs = run_flat(layer, keras.tree.flatten(args), seen)
            if not hasattr(layer, "_run_through_graph"):  # Sequential: one output
                (outputs,) = keras.tree.flatten(outputs)
        else:
            outputs = layer(*args, **kwargs)
        seen(layer, outputs)
        return outputs

    return graph._run_through_graph(inputs, operation_fn=lambda layer: layer, call_fn=call)


def rename_clashes(layers: Iterator[keras.layers.Layer] | tuple[keras.layers.Layer, ...]) -> None:
    """Gives a layer whose name an earlier one has a free name (``conv`` -> ``conv_1``).

    A flat model needs unique names; layers of two nested models (or of a nested model and the
    outer one) may share them.
    """
    taken: set[str] = set()
    for layer in layers:
        name, n = layer.name, 0
        while name in taken:
            n += 1
            name = f"{layer.name}_{n}"
        if name != layer.name:
            layer.name = name
        taken.add(name)
