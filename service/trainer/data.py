"""Image folders (one sub-folder per class) as tf.data pipelines.

Files are listed and checked in Python first, so that a bad dataset fails before training with
a message naming the folder or file. Decoding runs in parallel inside tf.data; decoded images are
cached as uint8 (a quarter of float32's memory) before the per-epoch shuffle, so every epoch sees
a new order, and turned into float32 raw pixels (0-255) batch by batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from service.trainer.errors import Incompatible, InvalidDataset

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
SHUFFLE_BUFFER = 10_000
LABEL_MODES = ("categorical", "int", "binary")


@dataclass(frozen=True)
class ImageFolder:
    """The images found under a dataset folder, in a stable order.

    Attributes:
        root: The folder.
        class_names: Sub-folder names, sorted; a label is an index into this list.
        files: Image file paths.
        labels: One class index per file.
    """

    root: Path
    class_names: list[str]
    files: list[str]
    labels: np.ndarray

    def counts(self) -> dict[str, int]:
        """Images per class."""
        per_class = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, per_class, strict=True)}


@dataclass
class ImageDatasets:
    """The pipelines that ``model.fit`` reads, and what they hold.

    Attributes:
        train: Batches of (float32 raw pixels (B, H, W, C), labels), reshuffled every epoch.
        validation: Like ``train`` but in a fixed order; None when there is no validation.
        class_names: Class names in label order.
        image_shape: (height, width, channels) of every image.
        label_mode: ``categorical`` (one-hot), ``int`` or ``binary`` (0/1, shape (B, 1)).
        train_counts: Training images per class.
        validation_counts: Validation images per class (empty without validation).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    class_names: list[str]
    image_shape: tuple[int, int, int]
    label_mode: str
    train_counts: dict[str, int]
    validation_counts: dict[str, int]


def label_mode_for_loss(loss: str) -> str:
    """The label encoding a Keras loss expects: ``categorical``, ``int`` or ``binary``."""
    name = loss.replace("_", "").lower()
    if name.startswith("sparse"):
        return "int"
    if name.startswith("binary"):
        return "binary"
    return "categorical"


def scan_image_folder(path: str | os.PathLike[str], field: str) -> ImageFolder:
    """Lists the images of a class-per-folder dataset and checks that each really is an image.

    Args:
        path: The local folder.
        field: The spec field it came from (``dataset.train``), for messages.

    Raises:
        InvalidDataset: The folder is missing, has no class folders, an empty class folder,
            or files that are not images despite their names.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidDataset(
            f"{field}: no folder of images was found there. It must hold one sub-folder of images "
            "per class (the class is the folder name)."
        )
    class_names = sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not class_names:
        raise InvalidDataset(
            f"{field}: the folder holds no class folders. It must hold one sub-folder of images "
            "per class (the class is the folder name)."
        )
    files: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    for label, name in enumerate(class_names):
        found = _image_files(root / name)
        if not found:
            empty.append(name)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise InvalidDataset(
            f"{field}: no images were found in its class folders ({_names(class_names)}). "
            f"Images must be {', '.join(IMAGE_SUFFIXES)} files."
        )
    if empty:
        raise InvalidDataset(
            f"{field}: the class folders {_names(empty)} hold no images "
            f"({', '.join(IMAGE_SUFFIXES)}). Add images or remove those folders."
        )
    bad = [f for f in files if not _looks_like_image(f)]
    if bad:
        shown = ", ".join(os.path.relpath(f, root) for f in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise InvalidDataset(
            f"{field}: {len(bad)} file(s) are not readable images despite their names: "
            f"{shown}{more}. Remove or re-encode them as PNG or JPEG."
        )
    return ImageFolder(root, class_names, files, np.asarray(labels, dtype=np.int64))


def load_image_datasets(
    train_path: str | os.PathLike[str],
    validation_path: str | os.PathLike[str] | None,
    *,
    image_shape: tuple[int, int, int],
    batch_size: int,
    label_mode: str,
    validation_split: float,
    seed: int,
    data_format: str = "auto",
) -> ImageDatasets:
    """Builds the training and validation pipelines.

    Args:
        train_path: Local folder with one sub-folder of images per class.
        validation_path: Like ``train_path``; None to hold out ``validation_split`` of train.
        image_shape: (height, width, channels) to decode and resize every image to.
        batch_size: Images per batch.
        label_mode: See label_mode_for_loss.
        validation_split: Share of each class held out when there is no validation folder;
            0 means no validation.
        seed: Seeds the hold-out split and the shuffling.
        data_format: The spec's ``dataset.format``.

    Raises:
        InvalidDataset: The data is missing, empty, has fewer than 2 classes, or its validation
            classes differ from its training classes.
        Incompatible: The loss's label encoding does not fit the number of classes.
    """
    if data_format not in ("auto", "image_folder"):
        raise InvalidDataset(
            f"dataset.format {data_format!r} is not supported yet; use 'auto' or 'image_folder' "
            "with one folder of images per class."
        )
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}. Received: {label_mode!r}")
    train = scan_image_folder(train_path, "dataset.train")
    if len(train.class_names) < 2:
        raise InvalidDataset(
            f"dataset.train: found only the class {_names(train.class_names)}; a classifier needs "
            "at least 2 class folders."
        )
    if label_mode == "binary" and len(train.class_names) != 2:
        raise Incompatible(
            f"training.loss is binary but the data has {len(train.class_names)} classes "
            f"({_names(train.class_names)}). Use categorical_crossentropy, or 2 classes."
        )
    if validation_path is not None:
        validation: ImageFolder | None = scan_image_folder(validation_path, "dataset.validation")
        assert validation is not None
        if validation.class_names != train.class_names:
            raise InvalidDataset(
                "dataset.validation has other classes than dataset.train: validation has "
                f"{_names(validation.class_names)}, train has {_names(train.class_names)}. "
                "Both need the same class folders."
            )
    elif validation_split > 0:
        train, validation = split_folder(train, validation_split, seed)
    else:
        validation = None
    num_classes = len(train.class_names)
    return ImageDatasets(
        train=_pipeline(train, image_shape, batch_size, label_mode, num_classes, seed),
        validation=(
            None
            if validation is None
            else _pipeline(validation, image_shape, batch_size, label_mode, num_classes, None)
        ),
        class_names=list(train.class_names),
        image_shape=image_shape,
        label_mode=label_mode,
        train_counts=train.counts(),
        validation_counts={} if validation is None else validation.counts(),
    )


def split_folder(
    folder: ImageFolder, validation_split: float, seed: int
) -> tuple[ImageFolder, ImageFolder | None]:
    """Holds out ``validation_split`` of every class (stratified), the same for the same seed.

    Returns:
        (train, validation); validation is None where no class has enough images to spare one.
    """
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in range(len(folder.class_names)):
        members = rng.permutation(np.flatnonzero(folder.labels == label))
        n_val = min(round(len(members) * validation_split), len(members) - 1)
        val_idx.extend(members[:n_val].tolist())
        train_idx.extend(members[n_val:].tolist())
    if not val_idx:
        return folder, None

    def subset(indices: Sequence[int]) -> ImageFolder:
        ordered = sorted(indices)
        return ImageFolder(
            folder.root,
            folder.class_names,
            [folder.files[i] for i in ordered],
            folder.labels[ordered],
        )

    return subset(train_idx), subset(val_idx)


def _pipeline(
    folder: ImageFolder,
    image_shape: tuple[int, int, int],
    batch_size: int,
    label_mode: str,
    num_classes: int,
    shuffle_seed: int | None,
) -> tf.data.Dataset:
    height, width, channels = image_shape
    labels = _encode_labels(folder.labels, label_mode, num_classes)

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False, dtype=tf.uint8
        )
        image = tf.image.resize(image, (height, width), method="bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        image.set_shape((height, width, channels))
        return image, label

    def to_float(images: tf.Tensor, batch_labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(images, tf.float32), batch_labels

    files = folder.files
    if shuffle_seed is not None:
        # One full shuffle of the (cheap) file list, so that the cache is not in class order
        # and a shuffle buffer smaller than the dataset still mixes classes.
        order = np.random.default_rng(shuffle_seed).permutation(len(files))
        files, labels = [files[i] for i in order], labels[order]
    dataset = tf.data.Dataset.from_tensor_slices((files, labels))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(
            min(len(folder.files), SHUFFLE_BUFFER), seed=shuffle_seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _encode_labels(labels: np.ndarray, label_mode: str, num_classes: int) -> np.ndarray:
    if label_mode == "categorical":
        return np.eye(num_classes, dtype=np.float32)[labels]
    if label_mode == "binary":
        return labels.astype(np.float32).reshape(-1, 1)
    return labels.astype(np.int32)


def _image_files(folder: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, name)
            for name in sorted(filenames)
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")
        )
    return found


def _looks_like_image(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return head.startswith(IMAGE_SIGNATURES)


def _names(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
