"""A Keras 2 SavedModel folder rebuilt as data: no stored graph function ever runs.

TensorFlow's SavedModel loader (``tf.saved_model.load``, and tf_keras ``load_model`` on a
folder) restores the folder's object graph and runs the graph functions stored in it, resource
initializers included: a folder whose ``keras_metadata.pb`` lists only ordinary layers can still
write files when loaded. So the folder is never loaded; its parts are read as data:

- the model's configuration: the root entry of ``keras_metadata.pb`` (a protocol buffer whose
  entries hold JSON; model_safety has already checked every entry);
- the variables: ``tf.train.load_checkpoint`` on ``variables/variables`` reads plain tensors;
- which variable is which layer's weight: the checkpoint's object graph (a protocol buffer:
  each layer's ``trainable_variables`` and ``keras_api/non_trainable_variables`` lists, which
  are the order a Keras 2 ``.h5`` file stores them in).

From these a Keras 2 ``.h5`` file is written in scratch (configuration and weights, the layout
tf_keras itself writes), which loading then opens as any Keras 2 ``.h5``: Keras 3's reader, in
safe mode, with the configuration translated where Keras 2 and 3 differ. Whatever else the
folder holds (graph functions, resources, assets, signatures, variables of no layer) is
ignored, never run, and named in ``RebuiltSavedModel.ignored``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.trainer.errors import InvalidModel
from service.trainer.model_safety import (
    FIELD,
    MetadataEntry,
    ModelLimits,
    find_unsafe,
    saved_model_entries,
)

#: The checkpoint entry holding the serialized object graph.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
#: Children every tf_keras SavedModel's root has: layers, their variable lists, the functions
#: tf_keras writes for serving. Anything else at the root was added to the model by hand.
KERAS_ROOT_CHILDREN = frozenset(
    {
        "variables",
        "trainable_variables",
        "non_trainable_variables",
        "regularization_losses",
        "keras_api",
        "__call__",
        "call_and_return_all_conditional_losses",
        "call_and_return_conditional_losses",
        "_default_save_signature",
        "signatures",
        "optimizer",
    }
)
#: Largest saved_model.pb parsed to report what was ignored (the model never needs it).
MAX_GRAPH_BYTES = 256 * 1024 * 1024
SAVE_AGAIN = "Save the model again with model.save('folder/') (Keras 2) or as a .keras file."


@dataclass(frozen=True)
class RebuiltSavedModel:
    """What rebuilding a SavedModel folder found.

    Attributes:
        keras_version: The Keras version that wrote the folder (``"2.21.0"``), else "".
        layers: How many layers the configuration names.
        weights: How many variables were read into layer weights.
        ignored: What the folder holds that the rebuilt model does not use, each as
            ``"<name> (<kind>)"`` or a count of a kind (never run, never read as code).
    """

    keras_version: str
    layers: int
    weights: int
    ignored: tuple[str, ...]


def rebuild_as_h5(folder: Path, h5: Path, limits: ModelLimits | None = None) -> RebuiltSavedModel:
    """Writes the Keras 2 model of a SavedModel ``folder`` as a Keras 2 ``.h5`` at ``h5``.

    Args:
        folder: The staged SavedModel folder, already passed by model_safety.check_model_file.
        h5: Where to write the ``.h5`` (in scratch).
        limits: The checkpoint's variables (their shapes, before any is read) are counted
            against ``limits.max_params``; None: not.

    Raises:
        InvalidModel: The folder holds no functional Keras 2 model, or its variables or object
            graph do not match the configuration.
    """
    entries = saved_model_entries(folder)
    root = _root_entry(entries)
    config = root.metadata.get("model_config")
    if not isinstance(config, dict) or find_unsafe(config) is not None:
        raise InvalidModel(
            f"{FIELD}: the SavedModel's keras_metadata.pb holds no usable model configuration. "
            + SAVE_AGAIN
        )
    layer_names = _layer_names(config)
    paths = {
        entry.metadata.get("name"): entry.path.split(".", 1)[1]
        for entry in entries
        if entry.path.count(".") == 1 and entry.path.startswith("root.")
    }
    reader, graph = _checkpoint(folder)
    if limits is not None:
        shapes = reader.get_variable_to_shape_map()
        stored = sum(
            int(np.prod(shape)) for key, shape in shapes.items() if key != OBJECT_GRAPH_KEY
        )
        limits.check_params(stored, "stored in the checkpoint")
    used: set[str] = set()
    weights: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name in layer_names:
        child = paths.get(name)
        node = None if child is None else _child(graph, 0, child)
        weights[name] = [] if node is None else _layer_weights(reader, graph, node, used)
    keras_version = str(root.metadata.get("keras_version", ""))
    _write_h5(h5, config, layer_names, weights, keras_version)
    return RebuiltSavedModel(
        keras_version=keras_version,
        layers=len(layer_names),
        weights=len(used),
        ignored=_ignored(folder, graph, reader, used),
    )


def _root_entry(entries: list[MetadataEntry]) -> MetadataEntry:
    for entry in entries:
        if entry.path == "root":
            if not entry.metadata.get("is_graph_network", False):
                raise InvalidModel(
                    f"{FIELD}: the SavedModel holds a subclassed Keras 2 model, whose layers the "
                    "service cannot rewire. Save a functional or Sequential model. " + SAVE_AGAIN
                )
            return entry
    raise InvalidModel(
        f"{FIELD}: the SavedModel's keras_metadata.pb describes no model (no root entry). "
        + SAVE_AGAIN
    )


def _layer_names(config: dict[str, Any]) -> list[str]:
    layers = (config.get("config") or {}).get("layers")
    if not isinstance(layers, list):
        raise InvalidModel(f"{FIELD}: the SavedModel's model configuration lists no layers.")
    names = []
    for layer in layers:
        name = (layer.get("config") or {}).get("name") if isinstance(layer, dict) else None
        if not isinstance(name, str):
            raise InvalidModel(f"{FIELD}: a layer of the SavedModel's configuration has no name.")
        names.append(name)
    return names


def _checkpoint(folder: Path) -> tuple[Any, Any]:
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    prefix = folder / "variables" / "variables"
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
            reader.get_tensor(OBJECT_GRAPH_KEY)
        )
    except Exception as exc:
        raise InvalidModel(
            f"{FIELD}: the SavedModel's variables (variables/variables.index and .data) cannot "
            f"be read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
            + SAVE_AGAIN
        ) from exc
    return reader, graph


def _child(graph: Any, node_id: int, path: str) -> int | None:
    """The node reached from ``node_id`` by the local names of ``path`` (``a/b``), or None."""
    for name in path.split("/"):
        if not 0 <= node_id < len(graph.nodes):
            return None
        found = [c.node_id for c in graph.nodes[node_id].children if c.local_name == name]
        if not found:
            return None
        node_id = found[0]
    return node_id if 0 <= node_id < len(graph.nodes) else None


def _variables(graph: Any, node_id: int | None) -> list[int]:
    if node_id is None:
        return []
    children = graph.nodes[node_id].children
    return [c.node_id for c in sorted(children, key=lambda c: _index(c.local_name))]


def _index(name: str) -> int:
    return int(name) if name.isdigit() else -1


def _layer_weights(
    reader: Any, graph: Any, node: int, used: set[str]
) -> list[tuple[str, np.ndarray]]:
    """A layer's weights as tf_keras writes them to .h5: trainable first, then the others."""
    order = _variables(graph, _child(graph, node, "trainable_variables")) + _variables(
        graph, _child(graph, node, "keras_api/non_trainable_variables")
    )
    weights = []
    for variable in order:
        values = [a for a in graph.nodes[variable].attributes if a.name == "VARIABLE_VALUE"]
        if len(values) != 1:
            raise InvalidModel(
                f"{FIELD}: the SavedModel's object graph lists a layer variable that the "
                "checkpoint does not hold. " + SAVE_AGAIN
            )
        key = values[0].checkpoint_key
        try:
            array = np.asarray(reader.get_tensor(key))
        except Exception as exc:
            raise InvalidModel(
                f"{FIELD}: the SavedModel's checkpoint lacks the variable {key!r}. " + SAVE_AGAIN
            ) from exc
        used.add(key)
        weights.append((values[0].full_name or key, array))
    return weights


def _write_h5(
    h5: Path,
    config: dict[str, Any],
    layer_names: list[str],
    weights: dict[str, list[tuple[str, np.ndarray]]],
    keras_version: str,
) -> None:
    import h5py

    with h5py.File(h5, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
        handle.attrs["keras_version"] = keras_version or "2"
        handle.attrs["backend"] = "tensorflow"
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        group.attrs["keras_version"] = keras_version or "2"
        group.attrs["backend"] = "tensorflow"
        for name in layer_names:
            layer = group.create_group(name)
            stored = [f"{index}" for index in range(len(weights[name]))]
            layer.attrs["weight_names"] = np.array([s.encode() for s in stored], dtype="S")
            for key, (_, array) in zip(stored, weights[name], strict=True):
                layer.create_dataset(key, data=array)


def _ignored(folder: Path, graph: Any, reader: Any, used: set[str]) -> tuple[str, ...]:
    """What the folder holds besides the layers' weights, as read from saved_model.pb."""
    ignored = [
        f"{child.local_name} (added to the model)"
        for child in graph.nodes[0].children
        if child.local_name not in KERAS_ROOT_CHILDREN
        and not child.local_name.startswith(("layer-", "layer_with_weights-"))
    ]
    kinds = _object_kinds(folder)
    for kind, label in (
        ("resource", "resources"),
        ("asset", "assets"),
        ("function", "graph functions"),
        ("bare_concrete_function", "concrete functions"),
        ("constant", "constants"),
    ):
        if kinds.get(kind):
            ignored.append(f"{kinds[kind]} {label}")
    extra = sorted(key for key in reader.get_variable_to_shape_map() if key != OBJECT_GRAPH_KEY)
    unused = [key for key in extra if key not in used]
    if unused:
        ignored.append(f"{len(unused)} checkpoint variables of no layer")
    assets = folder / "assets"
    if assets.is_dir():
        files = sum(1 for path in assets.rglob("*") if path.is_file())
        if files:
            ignored.append(f"{files} files in assets/")
    return tuple(ignored)


def _object_kinds(folder: Path) -> Counter[str]:
    """How many objects of each kind saved_model.pb's object graph holds (parsed, not loaded)."""
    from tensorflow.core.protobuf import saved_model_pb2

    graph_file = folder / "saved_model.pb"
    try:
        if graph_file.stat().st_size > MAX_GRAPH_BYTES:
            return Counter()  # the report then names no kinds; nothing else depends on it
        saved = saved_model_pb2.SavedModel.FromString(graph_file.read_bytes())
    except Exception:  # only for the report; the model does not depend on it
        return Counter()
    kinds: Counter[str] = Counter()
    for graph in saved.meta_graphs:
        kinds.update(str(node.WhichOneof("kind")) for node in graph.object_graph_def.nodes)
    return kinds
