"""A named ``keras.applications`` architecture, built without weights, then loaded from a file.

The service never downloads weights (``weights=None`` always); the weights file comes from the
job's storage (``base_model.weights_uri``) and is untrusted input. Only HDF5 is accepted, and
only arrays are read from it: nothing in the file is deserialized as a configuration or run.
Two layouts are read:

- ``legacy``: the ``.h5`` files Keras publishes for ``keras.applications`` (Keras 2's
  ``save_weights`` layout: a ``layer_names`` attribute and one group of ``weight_names`` per
  layer), with or without the top, loaded in layer order as Keras itself loads them.
- ``keras3``: a ``.weights.h5`` written by Keras 3's ``model.save_weights`` (groups
  ``layers/<path>/vars/<i>``).

Before anything is assigned the file's layout is compared with the built model's: the number of
layers with weights, and every weight's shape. A file of another architecture, another
``alpha``, or with the top where the build has none (or the reverse) is refused with
Incompatible naming the architecture, its options and the file, never with a shape traceback.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from service.contract.architectures import ARCHITECTURES
from service.contract.plan import ArchitectureSettings, TrainingPlan
from service.trainer.errors import Incompatible, InvalidModel
from service.trainer.loading import LoadedModel, check_built_model, open_base_model
from service.trainer.model_safety import ModelLimits, check_hdf5_file

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
FIELD = "base_model.weights_uri"
#: Names Keras gives the classifier top's layers, to say so when a file has the top.
TOP_LAYER_NAMES = ("predictions", "Logits", "fc1000", "probs")
#: keras.applications.efficientnet's IMAGENET_STDDEV_RGB.
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LoadedArchitecture:
    """A built architecture with its weights loaded, and what was loaded.

    Attributes:
        model: The Keras 3 model.
        layout: ``legacy`` (Keras-published ``.h5``) or ``keras3`` (``.weights.h5``).
        layers_loaded: Layers that received weights from the file.
        weights_loaded: Weight tensors assigned from the file.
        weights_digest: sha256 over the loaded weights (model order, float32 bytes), as read from
            the file (before the EfficientNet fix-up); the same digest of a freshly written
            file's arrays shows the file was really used.
    """

    model: keras.Model
    layout: str
    layers_loaded: int
    weights_loaded: int
    weights_digest: str
    file_sha256: str = ""
    written_by: str = ""

    def describe(self, settings: ArchitectureSettings) -> dict[str, Any]:
        """JSON-able facts for the events, the dry run's report and the manifest."""
        return {
            "name": settings.name,
            "options": {"include_top": settings.include_top, **settings.options},
            "built": settings.describe(),
            "weights_layout": self.layout,
            "weights_sha256": self.file_sha256,
            "layers_loaded": self.layers_loaded,
            "weights_loaded": self.weights_loaded,
            "loaded_weights_digest": self.weights_digest,
        }


def open_planned_base(
    plan: TrainingPlan, path: str | os.PathLike[str], limits: ModelLimits | None = None
) -> LoadedModel:
    """The job's base: the model file, or the named architecture loaded from its weights file.

    Args:
        plan: The job's plan (``plan.architecture`` None: ``path`` is a model file).
        path: The staged model file or folder, or the staged weights file.
        limits: The input size and parameter count the base may have (see open_base_model);
            a named architecture is checked as built. None: unchecked.
    """
    if plan.architecture is None:
        return open_base_model(path, plan.base_model_format, limits)
    loaded = open_architecture(plan.architecture, path, plan.data.image_size)
    if limits is not None:
        check_built_model(loaded.model, limits)
    return LoadedModel(
        loaded.model,
        file_format=f"weights_{loaded.layout}",
        written_by=loaded.written_by,
        reader="keras",
        architecture=loaded.describe(plan.architecture),
    )


def weights_digest(arrays: list[np.ndarray]) -> str:
    """sha256 over arrays in order (shape and float32 bytes of each)."""
    digest = hashlib.sha256()
    for array in arrays:
        value = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def input_shape_for(
    settings: ArchitectureSettings, image_size: tuple[int, int] | None
) -> tuple[int, int, int]:
    """``(height, width, 3)``: ``dataset.image_size``, else the architecture's default size."""
    if image_size is not None:
        return (image_size[0], image_size[1], 3)
    size = ARCHITECTURES[settings.name].default_size
    return (size, size, 3)


def build_architecture(
    settings: ArchitectureSettings, image_size: tuple[int, int] | None
) -> keras.Model:
    """``keras.applications.<name>(weights=None, ...)`` with the spec's options.

    Raises:
        Incompatible: The name is unknown, or Keras refuses the options or the input size.
    """
    if settings.name not in ARCHITECTURES:
        raise Incompatible(
            f"base_model.architecture {settings.name!r} is not supported.",
            field="base_model.architecture",
        )
    constructor = getattr(keras.applications, settings.name)
    shape = input_shape_for(settings, image_size)
    options = {k: v for k, v in settings.options.items() if k != "include_top"}
    try:
        return constructor(
            weights=None, include_top=settings.include_top, input_shape=shape, **options
        )
    except (ValueError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        field = "dataset.image_size" if "input" in reason.lower() else "base_model.options"
        raise Incompatible(
            f"{field}: Keras cannot build {settings.describe()} for input {list(shape)}: {reason}",
            field=field,
        ) from exc


def open_architecture(
    settings: ArchitectureSettings,
    weights_path: str | os.PathLike[str],
    image_size: tuple[int, int] | None,
    shown_name: str | None = None,
) -> LoadedArchitecture:
    """Builds the architecture and loads the weights file into it, after checking they fit.

    Args:
        settings: The spec's architecture and options.
        weights_path: The staged weights file (any local name).
        image_size: ``dataset.image_size``; None: the architecture's default size.
        shown_name: The file's name for messages (default: the local file's name).

    Raises:
        InvalidModel: The file is no HDF5 weights file.
        Incompatible: The file does not fit the architecture and options, or Keras cannot build
            the architecture at this size.
    """
    path = Path(weights_path)
    shown = shown_name or path.name
    layout = weights_layout(path, shown)
    model = build_architecture(settings, image_size)
    what = f"{settings.describe()} and the weights file {shown!r}"
    if layout == "legacy":
        layers, weights = _load_legacy(model, path, what)
    else:
        layers, weights = _load_keras3(model, path, what)
    digest = weights_digest([w.numpy() for w in model.weights])
    if ARCHITECTURES[settings.name].family == "efficientnet":
        _as_keras_builds_for_imagenet(model)
    return LoadedArchitecture(
        model,
        layout,
        layers,
        weights,
        digest,
        file_sha256=_sha256(path),
        written_by=_written_by(path),
    )


def _as_keras_builds_for_imagenet(model: keras.Model) -> None:
    """EfficientNetB0-B7 as ``weights="imagenet"`` builds them, with ``weights=None``.

    For ImageNet weights Keras adds ``Rescaling(1/sqrt(stddev))`` after the stem's
    Normalization layer (its ImageNet variance is the original's std; see the note in
    keras.applications.efficientnet); ``weights=None`` leaves it out. The same factor is folded
    into the Normalization layer's variance here (``(x - mean) / sqrt(var * stddev)``), so the
    model computes what Keras's ImageNet model computes, without a new layer.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            variance = np.asarray(layer.adapt_variance.numpy(), dtype=np.float32)
            stddev = np.asarray(IMAGENET_STDDEV_RGB, dtype=np.float32).reshape(variance.shape)
            layer.adapt_variance.assign(variance * stddev)
            layer.finalize_state()
            return


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _written_by(path: Path) -> str:
    """The Keras version a legacy file names (``2.2.4``), else ""."""
    import h5py

    with h5py.File(path, "r") as handle:
        raw = handle.attrs.get("keras_version", b"")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def weights_layout(path: Path, shown: str) -> str:
    """``legacy`` or ``keras3``: which weights layout the HDF5 file holds.

    Raises:
        InvalidModel: The file is missing, not HDF5, or HDF5 without weights in either layout.
    """
    import h5py

    if not path.is_file():
        raise InvalidModel(f"{FIELD}: no weights file was found at {shown!r}.", field=FIELD)
    with path.open("rb") as handle:
        if handle.read(8) != HDF5_SIGNATURE:
            raise InvalidModel(
                f"{FIELD}: {shown!r} is not an HDF5 file. Give the .h5 weights file as Keras "
                "publishes it, or a .weights.h5 written by model.save_weights.",
                field=FIELD,
            )
    check_hdf5_file(path, shown, FIELD)
    try:
        with h5py.File(path, "r") as handle:
            if "layer_names" in handle.attrs:
                return "legacy"
            if "model_weights" in handle and "layer_names" in handle["model_weights"].attrs:
                return "legacy"
            if "layers" in handle and isinstance(handle["layers"], h5py.Group):
                return "keras3"
    except OSError as exc:
        raise InvalidModel(
            f"{FIELD}: {shown!r} cannot be read as HDF5: {exc}.", field=FIELD
        ) from exc
    raise InvalidModel(
        f"{FIELD}: {shown!r} is HDF5 but holds no Keras weights (neither the layer_names "
        "layout of the published .h5 files nor the layers/ layout of .weights.h5). A whole "
        "saved model goes in base_model.uri instead.",
        field=FIELD,
    )


def _legacy_group(handle: Any) -> Any:
    return handle if "layer_names" in handle.attrs else handle["model_weights"]


def _names(raw: Any) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in raw]


def _load_legacy(model: keras.Model, path: Path, what: str) -> tuple[int, int]:
    """Checks the published layout against the model, then loads it as Keras does (by order)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    expected = [
        (layer.name, [tuple(w.shape) for w in legacy_h5_format._legacy_weights(layer)])
        for layer in model.layers
    ]
    expected = [entry for entry in expected if entry[1]]
    with h5py.File(path, "r") as handle:
        group = _legacy_group(handle)
        found: list[tuple[str, list[tuple[int, ...]]]] = []
        for name in _names(group.attrs["layer_names"]):
            layer_group = group[name]
            weight_names = _names(layer_group.attrs.get("weight_names", []))
            if weight_names:
                found.append((name, [tuple(layer_group[w].shape) for w in weight_names]))
        _compare(expected, found, what)
        try:
            legacy_h5_format.load_weights_from_hdf5_group(group, model)
        except (ValueError, KeyError) as exc:  # the check above should leave none
            raise Incompatible(f"{FIELD}: {what} do not fit: {exc}", field=FIELD) from exc
    return len(expected), sum(len(shapes) for _, shapes in expected)


def _keras3_layout(path: Path) -> list[tuple[str, list[tuple[int, ...]]]]:
    """``(layer path, [shapes of vars/0, vars/1, ...])`` of a ``.weights.h5``, in file order."""
    import h5py

    entries: list[tuple[str, list[tuple[int, ...]]]] = []
    with h5py.File(path, "r") as handle:

        def visit(name: str, node: Any) -> None:
            if isinstance(node, h5py.Group) and name.endswith("/vars") and len(node):
                keys = sorted(node.keys(), key=lambda k: int(k) if k.isdigit() else -1)
                entries.append((name[: -len("/vars")], [tuple(node[k].shape) for k in keys]))

        handle.visititems(visit)
    return entries


def _load_keras3(model: keras.Model, path: Path, what: str) -> tuple[int, int]:
    """Compares with the layout the model itself writes, then ``model.load_weights``."""
    with tempfile.TemporaryDirectory(prefix="weights-") as scratch:
        reference = Path(scratch) / "expected.weights.h5"
        model.save_weights(reference)
        expected = _keras3_layout(reference)
        found = _keras3_layout(path)
        _compare(expected, found, what)
        readable = Path(scratch) / "given.weights.h5"  # Keras picks its reader by the name
        readable.symlink_to(path.resolve())
        try:
            model.load_weights(readable)
        except (ValueError, KeyError) as exc:
            raise Incompatible(f"{FIELD}: {what} do not fit: {exc}", field=FIELD) from exc
    return len(expected), sum(len(shapes) for _, shapes in expected)


def _compare(
    expected: list[tuple[str, list[tuple[int, ...]]]],
    found: list[tuple[str, list[tuple[int, ...]]]],
    what: str,
) -> None:
    """Incompatible, naming the first difference, unless the layouts match weight by weight."""
    advice = (
        "Use the weights file made for this architecture with these options (alpha, "
        "include_top), or change base_model.architecture/options to the file's."
    )
    found_names = {name.rsplit("/", 1)[-1] for name, _ in found}
    expected_names = {name.rsplit("/", 1)[-1] for name, _ in expected}
    top = sorted((found_names - expected_names) & set(TOP_LAYER_NAMES))
    missing_top = sorted((expected_names - found_names) & set(TOP_LAYER_NAMES))
    if top:
        raise Incompatible(
            f"{FIELD}: {what} do not fit: the file holds the classifier top (layer "
            f"{top[0]!r}) but the model is built without it. Set base_model.options."
            "include_top to true, or use the no-top weights file.",
            field=FIELD,
        )
    if missing_top:
        raise Incompatible(
            f"{FIELD}: {what} do not fit: the model is built with the classifier top (layer "
            f"{missing_top[0]!r}) but the file has no such layer (a no-top file?). Set "
            "base_model.options.include_top to false, or use the with-top weights file.",
            field=FIELD,
        )
    if len(expected) != len(found):
        raise Incompatible(
            f"{FIELD}: {what} do not fit: the model has {len(expected)} layers with weights, "
            f"the file {len(found)}. {advice}",
            field=FIELD,
        )
    for index, ((layer, shapes), (saved, saved_shapes)) in enumerate(
        zip(expected, found, strict=True)
    ):
        if len(shapes) != len(saved_shapes):
            raise Incompatible(
                f"{FIELD}: {what} do not fit: layer #{index} ({layer!r}) has {len(shapes)} "
                f"weights in the model and {len(saved_shapes)} in the file ({saved!r}). {advice}",
                field=FIELD,
            )
        for position, (shape, saved_shape) in enumerate(zip(shapes, saved_shapes, strict=True)):
            if shape != saved_shape:
                raise Incompatible(
                    f"{FIELD}: {what} do not fit: weight {position} of layer #{index} "
                    f"({layer!r}) has shape {list(shape)} in the model but "
                    f"{list(saved_shape)} in the file ({saved!r}). {advice}",
                    field=FIELD,
                )
