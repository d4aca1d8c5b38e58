"""Opening the base model file, which is untrusted input.

Every format is checked first by model_safety (the stored configuration, read as data), then:

- ``.keras`` and ``.h5`` written by Keras 3: Keras 3 in safe mode.
- ``.h5`` written by Keras 2 (tf_keras): Keras 3's own reader for legacy ``.h5`` files, in safe
  mode, on a copy whose configuration is translated where Keras 2 and 3 differ (LEGACY_FIXES;
  e.g. Keras 2's DepthwiseConv2D stores ``groups``, which Keras 3 rejects).
- a SavedModel folder written by Keras 2 (``model.save("folder/")``): never loaded, since
  TensorFlow's SavedModel loader runs the graph functions stored in the folder. legacy_saved_model
  rebuilds it as data (the configuration from ``keras_metadata.pb``, the variables from the
  checkpoint as plain tensors) into a Keras 2 ``.h5`` in scratch, which then takes the path
  above; everything else in the folder is ignored and named in ``LoadedModel.ignored``.

The result is always a Keras 3 model, so the rest of the trainer has one code path, and the job's
output (``model.keras``) can be the base model of the next job.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from service.trainer.errors import InvalidModel
from service.trainer.legacy_saved_model import rebuild_as_h5
from service.trainer.model_safety import ModelLimits, check_model_file

ZIP_SIGNATURE = b"PK\x03\x04"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SAVE_ADVICE = "Save the model with model.save('model.keras') (Keras 3) and submit that file."


@dataclass(frozen=True)
class LoadedModel:
    """A base model and where it came from.

    Attributes:
        model: The model, as a Keras 3 model.
        file_format: ``keras``, ``h5`` or ``saved_model``.
        written_by: The Keras version that wrote the file where it says (``"2.21.0"``), else "".
        reader: What read it: ``keras`` (Keras 3, in safe mode).
        architecture: For a named architecture (service.trainer.architectures): its name,
            options, the weights file's layout and sha256, layers and weights loaded, and a
            digest of the loaded weights; None for a model file.
        ignored: What the file holds that was neither used nor run (a SavedModel folder's
            graph functions, resources, assets), as short phrases; empty for other formats.
    """

    model: keras.Model
    file_format: str
    written_by: str = ""
    reader: str = "keras"
    architecture: dict[str, Any] | None = None
    ignored: tuple[str, ...] = ()


def detect_format(path: str | os.PathLike[str], declared: str = "auto") -> str:
    """Says what kind of model file ``path`` is: ``keras``, ``h5`` or ``saved_model``.

    The content decides (a ``.keras`` file is a zip, a ``.h5`` file starts with the HDF5
    signature, a SavedModel is a folder holding ``saved_model.pb``); the name is only a tie-break.

    Args:
        path: The staged local file or folder.
        declared: The spec's ``base_model.format``; anything but ``auto`` must match the content.

    Raises:
        InvalidModel: Nothing is there, the content is no model format, or it contradicts
            ``declared``.
    """
    path = Path(path)
    if path.is_dir():
        detected = "saved_model" if (path / "saved_model.pb").is_file() else None
        if detected is None:
            raise InvalidModel(
                f"base_model.uri: the folder {path.name!r} holds no saved_model.pb, so it is not "
                "a TensorFlow SavedModel. Point base_model.uri at a .keras or .h5 file. "
                f"{SAVE_ADVICE}"
            )
    elif path.is_file():
        with path.open("rb") as handle:
            head = handle.read(8)
        if head.startswith(ZIP_SIGNATURE):
            detected = "keras"
        elif head.startswith(HDF5_SIGNATURE):
            detected = "h5"
        else:
            raise InvalidModel(
                f"base_model.uri: {path.name!r} is neither a .keras file (a zip archive) nor an "
                f"HDF5 .h5 file. {SAVE_ADVICE}"
            )
    else:
        raise InvalidModel(f"base_model.uri: no model file was found at {path.name!r}.")
    if declared not in ("auto", detected):
        raise InvalidModel(
            f"base_model.format is {declared!r} but {path.name!r} is a {detected!r} model. "
            f"Set base_model.format to 'auto' or {detected!r}."
        )
    return detected


def load_base_model(path: str | os.PathLike[str], declared_format: str = "auto") -> keras.Model:
    """The base model as a Keras 3 model; see open_base_model."""
    return open_base_model(path, declared_format).model


def open_base_model(
    path: str | os.PathLike[str], declared_format: str = "auto", limits: ModelLimits | None = None
) -> LoadedModel:
    """Checks, then loads the base model uncompiled: nothing from the file runs as code.

    Args:
        path: The staged local ``.keras``/``.h5`` file (any file name) or SavedModel folder.
        declared_format: The spec's ``base_model.format``.
        limits: The input size and parameter count the model may have: checked on what the
            file declares and stores before the model is built, and on the built model;
            None: unchecked.

    Returns:
        The model as saved, with the trainable flags the file holds.

    Raises:
        InvalidModel: The file cannot be read, is refused as unsafe (a Lambda layer, a class
            outside Keras), or is no ``keras.Model``.
    """
    path = Path(path)
    file_format = detect_format(path, declared_format)
    check_model_file(path, file_format, limits)
    with tempfile.TemporaryDirectory(prefix="base-model-") as scratch:
        if file_format == "saved_model":
            h5 = Path(scratch) / "from-saved-model.h5"
            rebuilt = rebuild_as_h5(path, h5, limits)
            model = _load_h5(h5, Path(scratch), path.name)
            loaded = LoadedModel(
                model, file_format, rebuilt.keras_version, "keras", ignored=rebuilt.ignored
            )
        elif file_format == "h5":
            loaded = LoadedModel(
                _load_h5(path, Path(scratch), path.name), file_format, _h5_keras_version(path)
            )
        else:
            loaded = LoadedModel(_keras_load(path, ".keras", Path(scratch), path.name), "keras")
    if not isinstance(loaded.model, keras.Model):
        raise InvalidModel(
            f"base_model.uri: {path.name!r} holds a {type(loaded.model).__name__}, not a Keras "
            f"model. {SAVE_ADVICE}"
        )
    if limits is not None:
        check_built_model(loaded.model, limits)
    return loaded


def check_built_model(model: keras.Model, limits: ModelLimits) -> None:
    """The built model's inputs and parameter count against ``limits`` (InvalidModel)."""
    for tensor in model.inputs:
        limits.check_input(list(tensor.shape), "as built")
    limits.check_params(int(model.count_params()), "as built")


def _keras_load(path: Path, suffix: str, scratch: Path, shown: str) -> Any:
    # Keras picks its reader by file name; a staged file may be named anything.
    readable = path
    if path.suffix.lower() != suffix:
        readable = scratch / f"model{suffix}"
        readable.symlink_to(path.resolve())
    try:
        return keras.saving.load_model(readable, compile=False, safe_mode=True)
    except Exception as exc:
        raise InvalidModel(
            f"base_model.uri: could not read {shown!r} as a Keras model: "
            f"{_short_reason(exc)} {SAVE_ADVICE}"
        ) from exc


def _load_h5(path: Path, scratch: Path, shown: str) -> Any:
    """Keras 3 reads the ``.h5`` (any writer), from a copy with translated config if needed."""
    config = _h5_model_config(path)
    fixed = translate_legacy_config(config)
    if fixed == config:
        return _keras_load(path, ".h5", scratch, shown)
    import h5py

    copy = scratch / "translated.h5"
    shutil.copyfile(path, copy)
    with h5py.File(copy, "r+") as handle:
        handle.attrs["model_config"] = json.dumps(fixed)
    return _keras_load(copy, ".h5", scratch, shown)


def _h5_model_config(path: Path) -> Any:
    import h5py

    with h5py.File(path, "r") as handle:
        raw = handle.attrs["model_config"]
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8")
    return json.loads(raw)


def _h5_keras_version(path: Path) -> str:
    import h5py

    with h5py.File(path, "r") as handle:
        raw = handle.attrs.get("keras_version", b"")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _drop_groups(config: dict[str, Any]) -> None:
    config.pop("groups", None)


#: Per layer class, how a Keras 2 layer config becomes one that Keras 3 accepts.
LEGACY_FIXES: dict[str, Callable[[dict[str, Any]], None]] = {
    # Keras 2 writes DepthwiseConv2D as a Conv2D subclass with groups=1; Keras 3 has no groups.
    "DepthwiseConv2D": _drop_groups,
}


def translate_legacy_config(config: Any) -> Any:
    """A copy of a model configuration with LEGACY_FIXES applied to every layer."""
    copy = json.loads(json.dumps(config))
    stack: list[Any] = [copy]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            fix = LEGACY_FIXES.get(str(node.get("class_name")))
            if fix is not None and isinstance(node.get("config"), dict):
                fix(node["config"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return copy


def _short_reason(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, trimmed: enough to act on, no internals."""
    text = str(exc)
    if "safe_mode" in text or "unsafe_deserialization" in text:
        # Keras's own advice (pass safe_mode=False) is not something a client can do here.
        what = "a Lambda layer" if "Lambda" in text else "custom Python code"
        return (
            f"it contains {what}, which the service refuses to run because a model file could "
            "execute arbitrary code that way. Replace it with built-in Keras layers."
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    if len(reason) > limit:
        reason = reason[: limit - 3] + "..."
    return reason if reason.endswith(".") else reason + "."
