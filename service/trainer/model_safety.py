"""Checking a model file's stored configuration BEFORE anything loads it.

A model file from a client is untrusted input. Keras 3 refuses Lambda layers and foreign classes
in safe mode, but tf_keras has no safe mode at all: loading a Keras 2 ``.h5`` or SavedModel
with a Lambda layer runs the Lambda's Python code. So every model's configuration is
read here as plain data (JSON from the ``.keras`` zip, the ``.h5`` ``model_config`` attribute,
the SavedModel's ``keras_metadata.pb``) and refused where it names:

- a ``Lambda`` layer (or tf_keras's ``TFOpLambda``/``SlicingOpLambda``, which call TensorFlow
  functions chosen by name) or a serialized Python lambda (``__lambda__``);
- a ``module`` outside Keras (``{"module": "os", "class_name": "system"}``);
- a custom registered class (``registered_name`` ``"package>Name"``);
- an activation that is not a plain Keras name (``"os.system"``).

No TensorFlow or Keras here: this module only reads files (``h5py`` for ``.h5``), so the worker
and the dry run can use it too.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from service.trainer.errors import InvalidModel

#: Layer classes whose configuration carries code (Python bytecode, or a function by name).
CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"})
#: Modules a configuration may name: Keras's own.
KERAS_MODULES = re.compile(r"^(keras|tf_keras)(\.[A-Za-z0-9_]+)*$")
PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Largest configuration read (bytes); a real model's is a few MB at most.
MAX_CONFIG_BYTES = 64 * 1024 * 1024
FIELD = "base_model.uri"
#: Most groups and datasets an HDF5 model or weights file may hold; Keras models hold thousands.
MAX_HDF5_OBJECTS = 1_000_000
#: Deepest nesting of lists and objects in a model configuration; Keras writes about 10 per
#: nested model (Keras's own readers recurse, so a deeper one would exhaust Python's stack).
MAX_CONFIG_DEPTH = 200
#: Configuration keys that declare a model input's shape (batch dimension first).
INPUT_SHAPE_KEYS = ("batch_input_shape", "batch_shape")


@dataclass(frozen=True)
class ModelLimits:
    """What a base model may declare, from the service's settings.

    Attributes:
        max_input_pixels: Most height x width of an image input (FINETUNE_MAX_INPUT_PIXELS).
        max_params: Most weights (scalars) of the model (FINETUNE_MAX_MODEL_PARAMS).
    """

    max_input_pixels: int
    max_params: int

    def check_input(self, shape: Any, where: str) -> None:
        """Refuses an input shape (batch first) over max_input_pixels."""
        pixels = input_pixels(shape)
        if pixels is not None and pixels > self.max_input_pixels:
            raise InvalidModel(
                f"{FIELD}: the model declares an input of {_dims(shape)} ({where}): "
                f"{pixels:,} pixels per image, over this service's limit of "
                f"{self.max_input_pixels:,} (FINETUNE_MAX_INPUT_PIXELS). Save the model with a "
                "smaller input (keras.Input((height, width, 3))) or with (None, None, 3) and set "
                "dataset.image_size; nothing was built."
            )

    def check_params(self, params: int, where: str) -> None:
        """Refuses a parameter count over max_params."""
        if params > self.max_params:
            raise InvalidModel(
                f"{FIELD}: the model has {params:,} parameters ({where}), over this service's "
                f"limit of {self.max_params:,} (FINETUNE_MAX_MODEL_PARAMS). Fine-tune a smaller "
                "model."
            )


def input_pixels(shape: Any) -> int | None:
    """Height x width (the dimensions between batch and channels) of an input shape, or None."""
    if not isinstance(shape, list | tuple) or len(shape) < 3:
        return None
    pixels = 1
    for dim in shape[1:-1]:
        if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
            pixels *= dim
    return pixels


def _dims(shape: Any) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def check_model_file(
    path: str | os.PathLike[str], file_format: str, limits: ModelLimits | None = None
) -> None:
    """Refuses a model whose stored configuration could run code on load.

    Args:
        path: The local ``.keras``/``.h5`` file or SavedModel folder.
        file_format: ``keras``, ``h5`` or ``saved_model`` (see loading.detect_format).
        limits: The declared input shapes and the stored weights are checked against these
            (a SavedModel's weights are counted where its checkpoint is read); None: not.

    Raises:
        InvalidModel: The configuration cannot be read, or names a Lambda layer, a module
            outside Keras, a custom class or an activation that is not a Keras name; or an
            HDF5 part (the ``.h5``, the ``.keras`` file's ``model.weights.h5``) reaches outside
            the file (check_hdf5_file); it nests deeper than MAX_CONFIG_DEPTH; or it is over
            ``limits``.
    """
    path = Path(path)
    stored: int | None = None
    if file_format == "keras":
        configs = [_keras_zip_config(path)]
        stored = _check_keras_zip_weights(path)
    elif file_format == "h5":
        configs = [_h5_config(path)]
        stored = check_hdf5_file(path, path.name)
    elif file_format == "saved_model":
        configs = list(_saved_model_configs(path))
    else:
        raise ValueError(f"Unknown model format. Received: file_format={file_format!r}")
    for config in configs:
        if config_depth(config) > MAX_CONFIG_DEPTH:
            raise InvalidModel(
                f"{FIELD}: the model's configuration nests more than {MAX_CONFIG_DEPTH} levels "
                f"deep (a Keras model nests about 10 per nested model), so it was "
                "not opened. Save the model again with model.save('model.keras')."
            )
    for config in configs:
        problem = find_unsafe(config)
        if problem is not None:
            raise InvalidModel(
                f"{FIELD}: the model contains {problem}, which the service refuses: a model "
                "file must not be able to run code. Replace it with built-in Keras layers and "
                "save the model again; nothing from the file was run."
            )
    if limits is not None:
        for config in configs:
            for shape in declared_input_shapes(config):
                limits.check_input(shape, "in its configuration")
        if stored is not None:
            limits.check_params(stored, "stored in the file")


def config_depth(config: Any) -> int:
    """How deeply lists and objects nest in a configuration (a scalar: 0), without recursion.

    Counting stops one level past MAX_CONFIG_DEPTH.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(config, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if depth <= MAX_CONFIG_DEPTH:
                children = node.values() if isinstance(node, dict) else node
                stack.extend((child, depth) for child in children)
    return deepest


def declared_input_shapes(config: Any) -> Iterator[Any]:
    """Every input shape a configuration declares (``batch_input_shape``, ``batch_shape``)."""
    for _, node in _walk(config, None):
        if isinstance(node, dict):
            for name in INPUT_SHAPE_KEYS:
                if isinstance(node.get(name), list):
                    yield node[name]


def check_hdf5_file(
    source: str | os.PathLike[str] | IO[bytes], shown: str, field: str = FIELD
) -> int:
    """Refuses an HDF5 file that would make a reader open other files of this machine.

    HDF5 lets a file point outside itself: an external link (a group member that is an object
    of another file, by path), a virtual dataset (its data mapped from other files) and a
    dataset with external storage (its raw bytes in other files, by path). Reading a model's
    weights through any of them would read files of the worker into the model. Every member is
    visited by its link, without following any (soft links point inside the file).

    Args:
        source: The file, or an open binary file object (a zip member).
        shown: The file's name for messages.
        field: The spec field the file came from.

    Returns:
        How many scalars the file's datasets hold, an optimizer's state left out: the model's
        stored parameters, read from the datasets' shapes (no data is read).

    Raises:
        InvalidModel: The file holds one of these, more than MAX_HDF5_OBJECTS objects, or is
            not readable as HDF5.
    """
    import h5py

    try:
        with h5py.File(source, "r") as handle:
            problem, stored = _hdf5_problem(handle, h5py)
    except OSError as exc:
        raise InvalidModel(
            f"{field}: {shown!r} is not a readable HDF5 file. Save the model again with "
            "model.save('model.keras').",
            field=field,
        ) from exc
    if problem is not None:
        raise InvalidModel(
            f"{field}: {shown!r} holds {problem}, which the service refuses: a model file must "
            "not read other files. Save the model again with model.save('model.keras'); "
            "nothing was read through it.",
            field=field,
        )
    return stored


def _hdf5_problem(handle: Any, h5py: Any) -> tuple[str | None, int]:
    seen: set[int] = set()
    stack = [handle]
    count = stored = 0
    while stack:
        group = stack.pop()
        for name in group:
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                return f"an external link {name!r} to the file {link.filename!r}", stored
            if not isinstance(link, h5py.HardLink):
                continue  # a soft link names a path inside this file, visited by its own name
            node = group[name]
            count += 1
            if count > MAX_HDF5_OBJECTS:
                return f"more than {MAX_HDF5_OBJECTS:,} objects", stored
            if isinstance(node, h5py.Dataset):
                if node.is_virtual:
                    problem = f"a virtual dataset {node.name!r} (its data mapped from other files)"
                    return problem, stored
                if node.external:
                    return f"a dataset {node.name!r} stored in external files", stored
                if not node.name.lstrip("/").startswith("optimizer"):
                    stored += int(node.size or 0)
            elif isinstance(node, h5py.Group) and hash(node.id) not in seen:
                seen.add(hash(node.id))
                stack.append(node)
    return None, stored


def _check_keras_zip_weights(path: Path) -> int | None:
    """The ``.keras`` file's ``model.weights.h5`` through check_hdf5_file: its stored scalars."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                return None
            with archive.open("model.weights.h5") as member:
                return check_hdf5_file(member, f"{path.name} (model.weights.h5)")
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModel(
            f"{FIELD}: {path.name!r} is not a readable .keras file (a damaged zip archive). "
            "Save the model again with model.save('model.keras')."
        ) from exc


def find_unsafe(config: Any) -> str | None:
    """A description of the first unsafe entry of a model configuration, or None."""
    for key, node in _walk(config, None):
        if isinstance(node, dict):
            class_name = node.get("class_name")
            if isinstance(class_name, str) and class_name in CODE_LAYERS:
                name = node.get("name") or (node.get("config") or {}).get("name")
                shown = f" ({name!r})" if isinstance(name, str) else ""
                return f"a {class_name} layer{shown}"
            module = node.get("module")
            if module is not None and (
                not isinstance(module, str) or not KERAS_MODULES.match(module)
            ):
                return f"a reference to the module {module!r} (outside Keras)"
            registered = node.get("registered_name")
            if isinstance(registered, str) and ">" in registered:
                return f"the custom class {registered!r}"
            if "function_type" in node and "function" in node:
                return "a serialized Python function"
        elif (
            isinstance(node, str)
            and isinstance(key, str)
            and (key == "activation" or key.endswith("_activation"))
            and not PLAIN_NAME.match(node)
        ):
            return f"the activation {node!r} (not a Keras activation name)"
    return None


def _walk(node: Any, key: str | None) -> Iterator[tuple[str | None, Any]]:
    stack: list[tuple[str | None, Any]] = [(key, node)]
    while stack:
        key, node = stack.pop()
        yield key, node
        if isinstance(node, dict):
            stack.extend((str(k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((key, v) for v in node)


def _json(text: str | bytes, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidModel(
            f"{FIELD}: {where} is not valid JSON, so the model was not opened."
        ) from exc
    except RecursionError as exc:  # nested deeper than Python's parser goes
        raise InvalidModel(
            f"{FIELD}: {where} nests more than {MAX_CONFIG_DEPTH} levels deep (a Keras model "
            "nests about 10 per nested model), so the model was not opened. Save the model "
            "again with model.save('model.keras')."
        ) from exc


def _keras_zip_config(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise InvalidModel(f"{FIELD}: the model's config.json is implausibly large.")
            return _json(archive.read(info), "the .keras file's config.json")
    except KeyError as exc:
        raise InvalidModel(
            f"{FIELD}: {path.name!r} is a zip archive without config.json, so not a .keras model. "
            "Save the model with model.save('model.keras')."
        ) from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModel(
            f"{FIELD}: {path.name!r} is not a readable .keras file (a damaged zip archive). "
            "Save the model again with model.save('model.keras')."
        ) from exc


def _h5_config(path: Path) -> Any:
    import h5py  # not TensorFlow; only needed for .h5 files

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
    except OSError as exc:
        raise InvalidModel(
            f"{FIELD}: {path.name!r} is not a readable HDF5 file. Save the model again with "
            "model.save('model.h5') or, better, model.save('model.keras')."
        ) from exc
    if raw is None:
        raise InvalidModel(
            f"{FIELD}: {path.name!r} holds weights only (no model_config), so the service cannot "
            "rebuild the model from it. Save the whole model with model.save(), not save_weights()."
        )
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8", errors="replace")
    return _json(str(raw), "the .h5 file's model_config")


@dataclass(frozen=True)
class MetadataEntry:
    """One entry of a SavedModel's ``keras_metadata.pb``.

    Attributes:
        path: Where the object sits in the object graph (``root``, ``root.layer_with_weights-0``).
        metadata: The entry's JSON (a layer's name, class and configuration).
    """

    path: str
    metadata: Any


def saved_model_entries(path: Path) -> list[MetadataEntry]:
    """The entries of a SavedModel folder's ``keras_metadata.pb``, read as data.

    Raises:
        InvalidModel: The file is missing, implausibly large, damaged or lists nothing.
    """
    metadata = path / "keras_metadata.pb"
    if not metadata.is_file():
        raise InvalidModel(
            f"{FIELD}: the SavedModel folder has no keras_metadata.pb, so it is a serving export "
            "rather than a Keras model, and cannot be fine-tuned. Submit the model as saved by "
            "Keras: model.save('model.keras') (Keras 3) or model.save('folder/') (Keras 2)."
        )
    data = metadata.read_bytes()
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidModel(f"{FIELD}: the SavedModel's keras_metadata.pb is implausibly large.")
    try:
        nodes = list(_metadata_entries(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidModel(
            f"{FIELD}: the SavedModel's keras_metadata.pb is damaged ({exc}); save the model again."
        ) from exc
    if not nodes:
        raise InvalidModel(f"{FIELD}: the SavedModel's keras_metadata.pb describes no layers.")
    return [
        MetadataEntry(node_path, _json(text, "a layer description in keras_metadata.pb"))
        for node_path, text in nodes
    ]


def _saved_model_configs(path: Path) -> Iterator[Any]:
    for entry in saved_model_entries(path):
        yield entry.metadata


# keras_metadata.pb is a SavedMetadata protocol buffer: field 1 repeats SavedObject messages,
# whose field 3 is the object's path and field 5 its metadata as a JSON string. Reading the
# wire format by hand keeps TensorFlow (and its protobuf classes) out of this module.
def _metadata_entries(data: bytes) -> Iterator[tuple[str, str]]:
    """(node_path, metadata JSON) of each SavedObject: fields 3 and 5."""
    for field, value in _fields(data):
        if field == 1 and isinstance(value, bytes):
            node_path, text = "", None
            for inner_field, inner in _fields(value):
                if inner_field == 3 and isinstance(inner, bytes):
                    node_path = inner.decode("utf-8")
                elif inner_field == 5 and isinstance(inner, bytes):
                    text = inner.decode("utf-8")
            if text is not None:
                yield node_path, text


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield field, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("a field runs past the end")
            yield field, data[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
        if pos > len(data):
            raise ValueError("a field runs past the end")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
