"""Finding the labelled examples of a dataset, whatever its format, before any training.

Each reader lists and checks its examples in Python, so that a bad dataset fails early with a
message naming the spec field and what to change:

- ``image_folder``: one sub-folder of images per class; class names are the folder names, sorted.
- ``npz``: arrays ``x`` (N, H, W) or (N, H, W, C) of 0-255 pixels and ``y`` (N class indices, or
  N one-hot rows); class names from an optional ``class_names`` array, else "0".."K-1". Read
  with ``allow_pickle=False``: an ``.npz`` cannot carry Python objects in.
- ``tfrecord``: ``tf.train.Example`` records with ``image`` (encoded PNG/JPEG/GIF/BMP bytes) and
  ``label`` (int64); class names "0".."K-1", K = the largest label + 1.

Archives (``.zip``, ``.tar.gz``) are unpacked by the worker and arrive here as image folders.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from service.contract.formats import IMAGE_SUFFIXES, TFRECORD_SUFFIXES
from service.trainer.errors import InvalidDataset

IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
#: Records whose images are test-decoded while scanning TFRecords (the rest decode in training).
TFRECORD_CHECKED_IMAGES = 8


@dataclass(frozen=True)
class Examples:
    """A dataset's examples in a stable order: labels, and where each image is.

    Attributes:
        root: The local file or folder read.
        class_names: Class names; a label is an index into this list.
        labels: One class index per example.
        files: ``image_folder``: one image file per example.
        source: ``image_folder``, ``npz`` or ``tfrecord``.
        positions: ``npz`` / ``tfrecord``: the row / record number of each example.
        shards: ``tfrecord``: the record files, in reading order.
        pixels: ``npz``: all images, uint8 (N, H, W, C).
    """

    root: Path
    class_names: list[str]
    files: list[str]
    labels: np.ndarray
    source: str = "image_folder"
    positions: np.ndarray | None = None
    shards: tuple[str, ...] = ()
    pixels: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Examples per class."""
        per_class = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, per_class, strict=True)}

    def subset(self, indices: Sequence[int] | np.ndarray) -> Examples:
        """The examples at ``indices`` (kept in ascending order)."""
        ordered = np.sort(np.asarray(indices, dtype=np.int64))
        return replace(
            self,
            files=[self.files[i] for i in ordered] if self.files else [],
            labels=self.labels[ordered],
            positions=None if self.positions is None else self.positions[ordered],
        )


#: The name the first release used for a class-per-folder dataset.
ImageFolder = Examples


def read_examples(path: str | os.PathLike[str], source: str, field: str) -> Examples:
    """The examples of a staged dataset.

    Args:
        path: The local folder (image_folder, tfrecord) or file (npz, or one tfrecord file).
        source: ``image_folder``, ``npz`` or ``tfrecord``.
        field: The spec field it came from (``dataset.train``), for messages.

    Raises:
        InvalidDataset: The data is missing, empty or malformed.
    """
    if source == "image_folder":
        return scan_image_folder(path, field)
    if source == "npz":
        return read_npz(path, field)
    if source == "tfrecord":
        return scan_tfrecords(path, field)
    raise InvalidDataset(
        f"dataset.format {source!r} is not supported; use auto, image_folder, zip, tar, npz or "
        "tfrecord.",
        field="dataset.format",
    )


def scan_image_folder(path: str | os.PathLike[str], field: str) -> Examples:
    """Lists the images of a class-per-folder dataset and checks that each really is an image.

    Raises:
        InvalidDataset: The folder is missing, has no class folders, an empty class folder,
            or files that are not images despite their names.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidDataset(
            f"{field}: no folder of images was found there. It must hold one sub-folder of images "
            "per class (the class is the folder name).",
            field=field,
        )
    class_names = sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not class_names:
        raise InvalidDataset(
            f"{field}: the folder holds no class folders. It must hold one sub-folder of images "
            "per class (the class is the folder name).",
            field=field,
        )
    files: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    for label, name in enumerate(class_names):
        found = image_files(root / name)
        if not found:
            empty.append(name)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise InvalidDataset(
            f"{field}: no images were found in its class folders ({names_text(class_names)}). "
            f"Images must be {', '.join(IMAGE_SUFFIXES)} files.",
            field=field,
        )
    if empty:
        raise InvalidDataset(
            f"{field}: the class folders {names_text(empty)} hold no images "
            f"({', '.join(IMAGE_SUFFIXES)}). Add images or remove those folders.",
            field=field,
        )
    bad = [f for f in files if not looks_like_image(f)]
    if bad:
        shown = ", ".join(os.path.relpath(f, root) for f in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise InvalidDataset(
            f"{field}: {len(bad)} file(s) are not readable images despite their names: "
            f"{shown}{more}. Remove or re-encode them as PNG or JPEG.",
            field=field,
        )
    return Examples(root, class_names, files, np.asarray(labels, dtype=np.int64))


def read_npz(path: str | os.PathLike[str], field: str) -> Examples:
    """Reads ``x``, ``y`` and the optional ``class_names`` of an ``.npz`` file.

    Raises:
        InvalidDataset: The file is not an .npz, lacks ``x`` or ``y``, holds Python objects, or
            its arrays do not have the shapes and values described in the module docstring.
    """
    root = Path(path)

    def invalid(problem: str) -> InvalidDataset:
        return InvalidDataset(
            f"{field}: {problem} An .npz dataset holds x (N, height, width[, channels]) with "
            "0-255 pixel values and y (N class indices from 0, or N one-hot rows), e.g. "
            "numpy.savez('train.npz', x=images, y=labels).",
            field=field,
        )

    try:
        with np.load(root, allow_pickle=False) as archive:
            missing = [name for name in ("x", "y") if name not in archive.files]
            if missing:
                raise invalid(f"the .npz file has no array {' or '.join(missing)}.")
            x, y = archive["x"], archive["y"]
            names = archive["class_names"] if "class_names" in archive.files else None
    except InvalidDataset:
        raise
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise invalid(
            "the .npz file holds Python objects, which the service does not load."
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise invalid("the file is not a readable .npz archive.") from exc
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or len(x) == 0:
        raise invalid(f"x has shape {tuple(x.shape)}.")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise invalid(f"x has dtype {x.dtype}, not numbers.")
    if y.ndim == 2 and len(y) == len(x) and y.shape[1] > 1:
        y = np.argmax(y, axis=1)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise invalid(
            f"y has shape {tuple(y.shape)} and dtype {y.dtype}; it needs {len(x)} integer labels."
        )
    if y.min() < 0:
        raise invalid("y has negative labels.")
    num_classes = int(y.max()) + 1
    if names is not None:
        class_names = [str(n) for n in names.tolist()]
        if len(class_names) < num_classes or len(set(class_names)) != len(class_names):
            raise invalid(
                f"class_names has {len(class_names)} names (they must be distinct) but y has "
                f"labels up to {num_classes - 1}."
            )
    else:
        class_names = [str(i) for i in range(num_classes)]
    pixels = np.clip(np.rint(x), 0, 255).astype(np.uint8) if x.dtype != np.uint8 else x
    labels = y.astype(np.int64)
    return Examples(
        root,
        class_names,
        [],
        labels,
        source="npz",
        positions=np.arange(len(labels), dtype=np.int64),
        pixels=pixels,
    )


def tfrecord_files(path: str | os.PathLike[str]) -> list[str]:
    """The TFRecord files of a staged dataset: the file itself, or those below a folder."""
    root = Path(path)
    if root.is_file():
        return [str(root)]
    return _files_below(root, TFRECORD_SUFFIXES)


def scan_tfrecords(path: str | os.PathLike[str], field: str) -> Examples:
    """Reads every record's label (and test-decodes a few images) of a TFRecord dataset.

    Raises:
        InvalidDataset: No TFRecord files, a damaged file, or records without an ``image``
            (bytes) or ``label`` (int64) feature.
    """
    import tensorflow as tf

    shards = tfrecord_files(path)
    advice = (
        "TFRecord datasets hold tf.train.Example records with the features image (encoded "
        "PNG or JPEG bytes) and label (int64 class index from 0)."
    )
    if not shards:
        raise InvalidDataset(
            f"{field}: no TFRecord files ({', '.join(TFRECORD_SUFFIXES)}) were found. {advice}",
            field=field,
        )
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    labels: list[int] = []
    try:
        for index, raw in enumerate(tf.data.TFRecordDataset(shards)):
            example = tf.io.parse_single_example(raw, features)
            labels.append(int(example["label"]))
            if index < TFRECORD_CHECKED_IMAGES:
                tf.io.decode_image(example["image"], expand_animations=False)
    except tf.errors.DataLossError as exc:
        raise InvalidDataset(
            f"{field}: a TFRecord file is damaged or is not a TFRecord file. {advice}", field=field
        ) from exc
    except tf.errors.InvalidArgumentError as exc:
        raise InvalidDataset(
            f"{field}: record {len(labels)} lacks a readable image or label. {advice}",
            field=field,
        ) from exc
    if not labels:
        raise InvalidDataset(f"{field}: the TFRecord files hold no records. {advice}", field=field)
    label_array = np.asarray(labels, dtype=np.int64)
    if label_array.min() < 0:
        raise InvalidDataset(f"{field}: some labels are negative. {advice}", field=field)
    num_classes = int(label_array.max()) + 1
    return Examples(
        Path(path),
        [str(i) for i in range(num_classes)],
        [],
        label_array,
        source="tfrecord",
        positions=np.arange(len(label_array), dtype=np.int64),
        shards=tuple(shards),
    )


def image_files(folder: Path) -> list[str]:
    """Image files below ``folder`` (recursively), sorted, hidden ones skipped."""
    return _files_below(folder, IMAGE_SUFFIXES)


def _files_below(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Files below ``folder`` (recursively) ending in one of ``suffixes``, sorted, not hidden."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, name)
            for name in sorted(filenames)
            if name.lower().endswith(suffixes) and not name.startswith(".")
        )
    return found


def looks_like_image(path: str) -> bool:
    """Whether the file starts like a PNG, JPEG, GIF or BMP."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return head.startswith(IMAGE_SIGNATURES)


def names_text(names: Sequence[str], limit: int = 10) -> str:
    """A few names quoted, for messages."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
