"""Opening the base model file, which is untrusted input: Keras 3 in safe mode only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras

from service.trainer.errors import InvalidModel

ZIP_SIGNATURE = b"PK\x03\x04"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SUFFIXES = {"keras": ".keras", "h5": ".h5"}
SAVE_ADVICE = "Save the model with model.save('model.keras') (Keras 3) and submit that file."


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
    """Loads the base model in safe mode, uncompiled: nothing from the file runs as code.

    Args:
        path: The staged local ``.keras``/``.h5`` file (any file name) or SavedModel folder.
        declared_format: The spec's ``base_model.format``.

    Returns:
        The model as saved, with the trainable flags the file holds.

    Raises:
        InvalidModel: The file cannot be read, is refused as unsafe (a Lambda layer, a class
            outside Keras), is a legacy SavedModel, or is no ``keras.Model``.
    """
    path = Path(path)
    file_format = detect_format(path, declared_format)
    if file_format == "saved_model":
        raise InvalidModel(
            "base_model.uri points at a TensorFlow SavedModel folder; legacy SavedModel bases come "
            f"in a later release. Provide a .keras or .h5 file instead. {SAVE_ADVICE}"
        )
    with tempfile.TemporaryDirectory(prefix="base-model-") as scratch:
        # Keras picks its reader by file name; a staged file may be named anything.
        suffix = SUFFIXES[file_format]
        readable = path
        if path.suffix.lower() != suffix:
            readable = Path(scratch) / f"model{suffix}"
            readable.symlink_to(path.resolve())
        try:
            model = keras.saving.load_model(readable, compile=False, safe_mode=True)
        except Exception as exc:
            raise InvalidModel(
                f"base_model.uri: could not read {path.name!r} as a Keras model: "
                f"{_short_reason(exc)} {SAVE_ADVICE}"
            ) from exc
    if not isinstance(model, keras.Model):
        raise InvalidModel(
            f"base_model.uri: {path.name!r} holds a {type(model).__name__}, not a Keras model. "
            f"{SAVE_ADVICE}"
        )
    return model


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
