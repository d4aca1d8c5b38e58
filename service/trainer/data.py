"""Datasets as tf.data pipelines of raw pixels: folders, npz arrays and TFRecords alike.

Examples are listed and checked in Python first (sources.py), so that a bad dataset fails before
training with a message naming the field. Decoding runs in parallel inside tf.data; every image
is decoded (or taken from the array), converted to the model's channels, resized to the model's
input with bilinear resampling and rounded to uint8, the same for every format. Decoded images
are cached as uint8 (a quarter of float32's memory) before the per-epoch shuffle, so every epoch
sees a new order, and turned into float32 raw pixels (0-255) batch by batch: exactly what the
exported model's serving signature takes. Augmentation (training only) runs after the cache, so
it differs every epoch, and is never part of the model.

Caching is bounded (the request's ``data_cache_mb``, see plan_caching): a dataset whose decoded
images do not fit is streamed instead, its list of examples shuffled every epoch before decoding
(TFRecords: through a buffer of encoded records) and its images decoded again every epoch, so
memory stays flat however large the dataset is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from service.contract.plan import AugmentationSettings
from service.trainer.errors import Incompatible, InvalidDataset
from service.trainer.sources import (
    Examples,
    ImageFolder,
    names_text,
    read_examples,
    scan_image_folder,
)

__all__ = [
    "ImageDatasets",
    "ImageFolder",
    "cache_budget_bytes",
    "class_weights",
    "hold_out",
    "image_datasets",
    "label_mode_for_loss",
    "load_image_datasets",
    "ordered_images",
    "plan_caching",
    "read_dataset",
    "scan_image_folder",
    "source_of_format",
    "split_folder",
]

SHUFFLE_BUFFER = 10_000
LABEL_MODES = ("categorical", "int", "binary")
#: dataset.format -> what the trainer reads (the worker unpacks zip and tar into folders).
SOURCE_OF_FORMAT = {
    "auto": "image_folder",
    "image_folder": "image_folder",
    "zip": "image_folder",
    "tar": "image_folder",
    "npz": "npz",
    "tfrecord": "tfrecord",
}


@dataclass(frozen=True)
class Split:
    """One split's pipelines.

    Attributes:
        batches: What ``fit`` reads: batches of (float32 raw pixels, labels), reshuffled every
            epoch where the split is shuffled.
        pixel_batches: The same batches with the pixels still uint8 (a quarter of the bytes to
            move to the device; the model's training form casts them there, fitting.py).
        positions: Batches of the same examples' positions in ``examples`` (int64), in the
            same order as ``batches`` (the same shuffle: one drawn per epoch for both).
        examples: (uint8 image, label) of every example, unbatched, in position order; cached
            where the split is.
        count: How many examples.
    """

    batches: tf.data.Dataset
    pixel_batches: tf.data.Dataset
    positions: tf.data.Dataset
    examples: tf.data.Dataset
    count: int


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
        source: What was read: ``image_folder``, ``npz`` or ``tfrecord``.
        cached: Whether train and validation keep their decoded images in memory (else they
            are decoded again from the staged files every epoch).
        splits: Train's and validation's pipelines (features.py reads their positions).
        augmented: Whether augmentation changes the training images every epoch.
        batch_size: Examples per batch.
        cache_left_bytes: What the data cache budget leaves once the decoded images are in.
        uint8_train: Batches of (uint8 pixels, labels) like ``train``, for a model that casts
            them on the device; None where augmentation makes float pixels.
        uint8_validation: Like ``validation``, uint8; None without validation.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    class_names: list[str]
    image_shape: tuple[int, int, int]
    label_mode: str
    train_counts: dict[str, int]
    validation_counts: dict[str, int]
    source: str = "image_folder"
    cached: tuple[bool, bool] = (True, True)
    splits: tuple[Split, Split | None] | None = None
    augmented: bool = False
    batch_size: int = 0
    cache_left_bytes: int = 0
    uint8_train: tf.data.Dataset | None = None
    uint8_validation: tf.data.Dataset | None = None


def label_mode_for_loss(loss: str) -> str:
    """The label encoding a Keras loss expects: ``categorical``, ``int`` or ``binary``."""
    name = loss.replace("_", "").lower()
    if name.startswith("sparse"):
        return "int"
    if name.startswith("binary"):
        return "binary"
    return "categorical"


def source_of_format(data_format: str, field: str = "dataset.format") -> str:
    """What the trainer reads for a ``dataset.format``: image_folder, npz or tfrecord.

    Raises:
        InvalidDataset: Unknown format.
    """
    try:
        return SOURCE_OF_FORMAT[data_format]
    except KeyError:
        raise InvalidDataset(
            f"dataset.format {data_format!r} is not supported; use one of "
            f"{', '.join(SOURCE_OF_FORMAT)}.",
            field=field,
        ) from None


def read_dataset(path: str | os.PathLike[str], data_format: str, which: str) -> Examples:
    """The examples of one staged dataset.

    Args:
        path: The staged data (a folder, or an npz / TFRecord file).
        data_format: Its format (``image_folder``, ``npz``, ``tfrecord``; the spec's words
            ``auto``, ``zip``, ``tar`` mean an image folder here).
        which: ``train`` or ``validation``, the spec field (``dataset.<which>``) for messages.

    Raises:
        InvalidDataset: The data is missing, empty or malformed, or the format unknown.
    """
    return read_examples(path, source_of_format(data_format), f"dataset.{which}")


def hold_out(
    train: Examples, validation: Examples | None, validation_split: float, seed: int
) -> tuple[Examples, Examples | None]:
    """Training and validation examples: the staged validation, else a share of train held out.

    Args:
        train: The staged training examples.
        validation: The staged validation examples; None to hold out ``validation_split``.
        validation_split: Share of each class held out (split_folder); 0 means no validation.
        seed: Seeds the hold-out split.
    """
    if validation is not None:
        return train, validation
    if validation_split > 0:
        return split_folder(train, validation_split, seed)
    return train, None


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
    validation_format: str | None = None,
    augmentation: AugmentationSettings | None = None,
    cache_mb: float | None = None,
) -> ImageDatasets:
    """Reads, checks and holds out the staged data, then builds its pipelines (image_datasets).

    Args:
        train_path: The staged training data (a folder, or an npz / TFRecord file).
        validation_path: Like ``train_path``; None to hold out ``validation_split`` of train.
        data_format: The training data's format (see read_dataset).
        validation_format: The validation data's format; None: the same as training's.
        validation_split: See hold_out.
        image_shape, batch_size, label_mode, seed, augmentation, cache_mb: See image_datasets.

    Raises:
        InvalidDataset: The data is missing, empty, has fewer than 2 classes, or its validation
            classes differ from its training classes.
        Incompatible: The loss's label encoding does not fit the number of classes.
    """
    train = read_dataset(train_path, data_format, "train")
    check_classes(train, label_mode)
    validation = None
    if validation_path is not None:
        validation = read_dataset(validation_path, validation_format or data_format, "validation")
        check_same_classes(train, validation)
    train, validation = hold_out(train, validation, validation_split, seed)
    return image_datasets(
        train,
        validation,
        image_shape=image_shape,
        batch_size=batch_size,
        label_mode=label_mode,
        seed=seed,
        augmentation=augmentation,
        cache_mb=cache_mb,
    )


def image_datasets(
    train: Examples,
    validation: Examples | None,
    *,
    image_shape: tuple[int, int, int],
    batch_size: int,
    label_mode: str,
    seed: int,
    augmentation: AugmentationSettings | None = None,
    cache_mb: float | None = None,
) -> ImageDatasets:
    """The training and validation pipelines of checked examples (see hold_out).

    Args:
        train: The training examples.
        validation: The validation examples; None: no validation.
        image_shape: (height, width, channels) to decode and resize every image to.
        batch_size: Images per batch.
        label_mode: See label_mode_for_loss.
        seed: Seeds the shuffling and the augmentation.
        augmentation: Random changes to training images; None or inactive: none.
        cache_mb: Most megabytes of decoded images kept in memory (see cache_budget_bytes).
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}. Received: {label_mode!r}")
    num_classes = len(train.class_names)
    cache_train, cache_validation = plan_caching(
        [len(train), 0 if validation is None else len(validation)],
        image_shape,
        cache_budget_bytes(cache_mb),
    )
    train_split = _pipeline(
        train, image_shape, batch_size, label_mode, num_classes, seed, cache_train
    )
    train_pipeline = train_split.batches
    augmented = augmentation is not None and augmentation.active
    if augmented:
        assert augmentation is not None
        # One batch at a time: the random layers draw from one seed generator, and parallel
        # calls would take its draws in a different order on each run (a seeded run repeats).
        train_pipeline = train_pipeline.map(_augmenter(augmentation, seed))
    validation_split = (
        None
        if validation is None
        else _pipeline(
            validation, image_shape, batch_size, label_mode, num_classes, None, cache_validation
        )
    )
    return ImageDatasets(
        train=train_pipeline.prefetch(tf.data.AUTOTUNE),
        validation=(
            None
            if validation_split is None
            else validation_split.batches.prefetch(tf.data.AUTOTUNE)
        ),
        class_names=list(train.class_names),
        image_shape=image_shape,
        label_mode=label_mode,
        train_counts=train.counts(),
        validation_counts={} if validation is None else validation.counts(),
        source=train.source,
        cached=(cache_train, cache_validation),
        splits=(train_split, validation_split),
        augmented=augmented,
        uint8_train=None if augmented else train_split.pixel_batches.prefetch(tf.data.AUTOTUNE),
        uint8_validation=(
            None
            if validation_split is None
            else validation_split.pixel_batches.prefetch(tf.data.AUTOTUNE)
        ),
        batch_size=batch_size,
        cache_left_bytes=cache_budget_bytes(cache_mb)
        - int(np.prod(image_shape))
        * (
            len(train) * cache_train
            + (0 if validation is None else len(validation)) * cache_validation
        ),
    )


def ordered_images(
    examples: Examples, image_shape: tuple[int, int, int], batch_size: int
) -> tf.data.Dataset:
    """Batches of float32 raw pixels of ``examples`` in their own order, decoded as training
    decodes them, not cached and never augmented: what the final evaluation predicts on."""
    pipeline = _pipeline(
        examples, image_shape, batch_size, "int", len(examples.class_names), None, cache=False
    )
    return pipeline.batches.map(lambda images, _labels: images).prefetch(tf.data.AUTOTUNE)


def check_same_classes_as_train(train: Examples, other: Examples, which: str) -> None:
    """Raises InvalidDataset where ``dataset.<which>`` has other classes than train."""
    if other.class_names != train.class_names:
        raise InvalidDataset(
            f"dataset.{which} has other classes than dataset.train: {which} has "
            f"{names_text(other.class_names)}, train has {names_text(train.class_names)}. "
            "Both need the same classes.",
            field=f"dataset.{which}",
        )


def cache_budget_bytes(megabytes: float | None) -> int:
    """The bytes of decoded images the pipelines may keep in memory.

    Args:
        megabytes: The budget; None: a quarter of the machine's physical memory; 0 streams
            every dataset.
    """
    if megabytes is None:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    if megabytes < 0:
        raise ValueError(f"The data cache must be 0 or more megabytes. Received: {megabytes}")
    return int(megabytes * 2**20)


def plan_caching(
    image_counts: Sequence[int], image_shape: tuple[int, int, int], budget_bytes: int
) -> list[bool]:
    """Which pipelines cache their decoded (uint8) images: each, in order, that fits the rest.

    Args:
        image_counts: Images per pipeline (train first: it is read most).
        image_shape: (height, width, channels) after decoding.
        budget_bytes: See cache_budget_bytes.
    """
    per_image = int(np.prod(image_shape))  # uint8: one byte per value
    left = budget_bytes
    plan = []
    for count in image_counts:
        fits = count * per_image <= left
        plan.append(fits)
        if fits:
            left -= count * per_image
    return plan


def check_classes(train: Examples, label_mode: str) -> None:
    """At least two classes, and two exactly for binary labels.

    Raises:
        InvalidDataset: Fewer than two classes.
        Incompatible: Binary labels but not two classes.
    """
    if len(train.class_names) < 2:
        what = "class folders" if train.source == "image_folder" else "classes (labels)"
        raise InvalidDataset(
            f"dataset.train: found only the class {names_text(train.class_names)}; a classifier "
            f"needs at least 2 {what}.",
            field="dataset.train",
        )
    if label_mode == "binary" and len(train.class_names) != 2:
        raise Incompatible(
            f"training.loss is binary but the data has {len(train.class_names)} classes "
            f"({names_text(train.class_names)}). Use categorical_crossentropy, or 2 classes."
        )


def check_same_classes(train: Examples, validation: Examples) -> None:
    """Raises InvalidDataset where validation's classes are not train's."""
    if validation.class_names != train.class_names:
        raise InvalidDataset(
            "dataset.validation has other classes than dataset.train: validation has "
            f"{names_text(validation.class_names)}, train has {names_text(train.class_names)}. "
            "Both need the same classes.",
            field="dataset.validation",
        )


def split_folder(
    folder: Examples, validation_split: float, seed: int
) -> tuple[Examples, Examples | None]:
    """Holds out ``validation_split`` of every class (stratified), the same for the same seed.

    Returns:
        (train, validation); validation is None where no class has enough images to spare one.
    """
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in range(len(folder.class_names)):
        members = rng.permutation(np.flatnonzero(folder.labels == label))
        if len(members) == 0:
            continue
        n_val = min(round(len(members) * validation_split), len(members) - 1)
        val_idx.extend(members[:n_val].tolist())
        train_idx.extend(members[n_val:].tolist())
    if not val_idx:
        return folder, None
    return folder.subset(train_idx), folder.subset(val_idx)


def class_weights(
    setting: str | Mapping[str, float] | None, class_names: list[str], counts: Mapping[str, int]
) -> dict[int, float] | None:
    """The ``class_weight`` for ``model.fit``: label index -> weight.

    Args:
        setting: The spec's ``training.class_weight``: None, ``"balanced"`` (total / (classes x
            class count), as scikit-learn computes it) or class name -> weight (others weigh 1).
        class_names: Class names in label order.
        counts: Training examples per class name.

    Raises:
        Incompatible: The setting names a class the data does not have.
    """
    if setting is None:
        return None
    if setting == "balanced":
        total = sum(counts.values())
        present = [name for name in class_names if counts.get(name, 0) > 0]
        return {
            index: (total / (len(present) * counts[name]) if counts.get(name, 0) else 1.0)
            for index, name in enumerate(class_names)
        }
    if isinstance(setting, str):
        raise Incompatible(
            f'training.class_weight {setting!r} is not supported; use "balanced", null or an '
            "object of class name to weight."
        )
    unknown = [name for name in setting if name not in class_names]
    if unknown:
        raise Incompatible(
            f"training.class_weight names classes the data does not have: "
            f"{names_text(unknown)}. The classes are {names_text(class_names)}."
        )
    return {index: float(setting.get(name, 1.0)) for index, name in enumerate(class_names)}


def _pipeline(
    examples: Examples,
    image_shape: tuple[int, int, int],
    batch_size: int,
    label_mode: str,
    num_classes: int,
    shuffle_seed: int | None,
    cache: bool = True,
) -> Split:
    height, width, channels = image_shape
    # Streamed (not cached): shuffle what is cheap to hold (file names, array positions,
    # encoded records) before decoding; parallel decoding keeps that order, so a seed fixes it.
    shuffle_early = shuffle_seed is not None and not cache

    def to_pixels(image: tf.Tensor) -> tf.Tensor:
        image = _match_channels(image, channels)
        image = tf.image.resize(image, (height, width), method="bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        image.set_shape((height, width, channels))
        return image

    def decode(data: tf.Tensor) -> tf.Tensor:
        return tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)

    def encode(label: tf.Tensor) -> tf.Tensor:
        if label_mode == "categorical":
            return tf.one_hot(label, num_classes, dtype=tf.float32)
        if label_mode == "binary":
            return tf.reshape(tf.cast(label, tf.float32), (1,))
        return tf.cast(label, tf.int32)

    order = np.arange(len(examples))
    if shuffle_seed is not None:
        # One full shuffle of the (cheap) list of examples, so that the cache is not in class
        # order and a shuffle buffer smaller than the dataset still mixes classes.
        order = np.random.default_rng(shuffle_seed).permutation(len(examples))
    labels = examples.labels[order]
    source: tf.data.Dataset
    to_example: Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
    buffer = min(len(examples), SHUFFLE_BUFFER)
    if examples.source == "image_folder":
        source = tf.data.Dataset.from_tensor_slices(([examples.files[i] for i in order], labels))
        buffer = len(examples) if shuffle_early else buffer  # file names: all of them

        def to_example(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return to_pixels(decode(tf.io.read_file(path))), encode(label)

    elif examples.source == "npz":
        assert examples.pixels is not None and examples.positions is not None
        # The arrays are in memory already: nothing to shuffle early (shuffled after the map).
        shuffle_early = False
        source = tf.data.Dataset.from_tensor_slices(
            (examples.pixels[examples.positions[order]], labels)
        )

        def to_example(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return to_pixels(image), encode(label)

    elif examples.source == "tfrecord":
        source = _tfrecord_dataset(examples)

        def to_example(data: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return to_pixels(decode(data)), encode(label)

    else:
        raise ValueError(f"Unknown source. Received: {examples.source!r}")
    decoded = source.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        decoded = decoded.cache()
    # Every example keeps its position in ``decoded`` through the shuffle, so that the features
    # of a frozen prefix (features.py) are read in the very order the images would have been.
    if shuffle_seed is None:
        images = decoded
        positions = tf.data.Dataset.range(len(examples))
    else:
        keyed = (source if shuffle_early else decoded).enumerate()
        keyed = keyed.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
        positions = keyed.map(lambda position, _example: position)
        if shuffle_early:
            images = keyed.map(
                lambda _position, example: to_example(*example),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        else:
            images = keyed.map(lambda _position, example: example)
    pixel_batches = images.batch(batch_size)
    return Split(
        batches=pixel_batches.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE),
        pixel_batches=pixel_batches,
        positions=positions.batch(batch_size),
        examples=decoded,
        count=len(examples),
    )


def _tfrecord_dataset(examples: Examples) -> tf.data.Dataset:
    """(encoded image, label) of the records at ``examples.positions``, in file order."""
    assert examples.positions is not None
    total = int(examples.positions.max()) + 1 if len(examples.positions) else 0
    wanted = np.zeros(total, dtype=bool)
    wanted[examples.positions] = True
    mask = tf.constant(wanted)
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def keep(index: tf.Tensor, _raw: tf.Tensor) -> tf.Tensor:
        return index < total and tf.gather(mask, tf.minimum(index, total - 1))

    def parse(_index: tf.Tensor, raw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        example = tf.io.parse_single_example(raw, features)
        return example["image"], example["label"]

    records = tf.data.TFRecordDataset(list(examples.shards)).enumerate()
    # A filter hides the length from TensorFlow; the positions state it (schedules count steps).
    kept = records.filter(keep).apply(tf.data.experimental.assert_cardinality(len(examples)))
    return kept.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _match_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Grayscale, RGB or RGBA as ``channels`` (1 or 3) channels, as decode_image does."""
    have = image.shape[-1]
    if have == channels or have is None:
        return image
    if have == 4:
        image = image[..., :3]
        have = 3
    if have == 1 and channels == 3:
        return tf.image.grayscale_to_rgb(image)
    if have == 3 and channels == 1:
        gray = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
        return tf.cast(tf.clip_by_value(tf.round(gray), 0.0, 255.0), tf.uint8)
    return image


def _to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32), labels


def _augmenter(
    settings: AugmentationSettings, seed: int
) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """A batch map applying random flips, rotations and zooms (training data only)."""
    import keras

    layers: list[keras.layers.Layer] = []
    if settings.flip != "none":
        layers.append(keras.layers.RandomFlip(settings.flip, seed=seed))
    if settings.rotation > 0:
        layers.append(keras.layers.RandomRotation(settings.rotation, seed=seed + 1))
    if settings.zoom > 0:
        layers.append(keras.layers.RandomZoom((-settings.zoom, settings.zoom), seed=seed + 2))

    def augment(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        for layer in layers:
            images = layer(images, training=True)
        return tf.clip_by_value(images, 0.0, 255.0), labels

    return augment
