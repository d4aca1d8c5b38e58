"""Image folders as tf.data pipelines, and clear errors for bad datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.trainer.data import (
    ImageDatasets,
    label_mode_for_loss,
    load_image_datasets,
    scan_image_folder,
    split_folder,
)
from service.trainer.errors import Incompatible, InvalidDataset
from tests.helpers.data import write_image_folder

SHAPE = (32, 32, 3)


def _load(train: Path, validation: Path | None = None, **options: Any) -> ImageDatasets:
    settings: dict[str, Any] = {
        "image_shape": SHAPE,
        "batch_size": 8,
        "label_mode": "categorical",
        "validation_split": 0.25,
        "seed": 0,
        **options,
    }
    return load_image_datasets(train, validation, **settings)


@pytest.mark.parametrize(
    ("loss", "mode"),
    [
        ("categorical_crossentropy", "categorical"),
        ("sparse_categorical_crossentropy", "int"),
        ("SparseCategoricalCrossentropy", "int"),
        ("binary_crossentropy", "binary"),
        ("binary_focal_crossentropy", "binary"),
        ("kl_divergence", "categorical"),
    ],
)
def test_label_mode_follows_the_loss(loss: str, mode: str) -> None:
    assert label_mode_for_loss(loss) == mode


def test_folder_becomes_batches_of_raw_pixels_and_one_hot_labels(digits_train: Path) -> None:
    data = _load(digits_train, validation_split=0.0)

    images, labels = next(iter(data.train))
    assert data.class_names == ["0", "1", "2"]
    assert data.train_counts == {"0": 40, "1": 40, "2": 40}
    assert data.validation is None
    assert images.dtype.name == "float32" and tuple(images.shape) == (8, *SHAPE)
    assert float(np.max(images)) > 100  # raw 0-255 pixels, not rescaled
    assert tuple(labels.shape) == (8, 3)
    np.testing.assert_array_equal(np.sum(labels, axis=1), np.ones(8))
    assert sum(int(x.shape[0]) for x, _ in data.train) == 120


def test_every_epoch_sees_a_new_order_after_the_cache(digits_train: Path) -> None:
    data = _load(digits_train, validation_split=0.0, label_mode="int")

    first = np.concatenate([y for _, y in data.train])
    second = np.concatenate([y for _, y in data.train])
    assert sorted(first) == sorted(second)
    assert not np.array_equal(first, second)


def test_hold_out_is_stratified_disjoint_and_seeded(digits_train: Path) -> None:
    folder = scan_image_folder(digits_train, "dataset.train")

    train, validation = split_folder(folder, 0.25, seed=3)
    again, _ = split_folder(folder, 0.25, seed=3)

    assert validation is not None
    assert validation.counts() == {"0": 10, "1": 10, "2": 10}
    assert train.counts() == {"0": 30, "1": 30, "2": 30}
    assert not set(train.files) & set(validation.files)
    assert train.files == again.files


def test_validation_folder_and_integer_labels(digits_train: Path, digits_validation: Path) -> None:
    data = _load(digits_train, digits_validation, label_mode="int")

    assert data.validation_counts == {"0": 12, "1": 12, "2": 12}
    assert data.validation is not None
    _, labels = next(iter(data.validation))
    assert labels.dtype.name == "int32" and tuple(labels.shape) == (8,)


def test_grayscale_when_the_model_takes_one_channel(digits_train: Path) -> None:
    data = _load(digits_train, image_shape=(24, 20, 1), validation_split=0.0)

    images, _ = next(iter(data.train))
    assert tuple(images.shape) == (8, 24, 20, 1)


def test_binary_labels_need_two_classes(tmp_path: Path, digits_train: Path) -> None:
    two = write_image_folder(tmp_path / "two", ["a", "b"], 4)

    _, labels = next(iter(_load(two, label_mode="binary", validation_split=0.0).train))
    assert tuple(labels.shape) == (8, 1)
    with pytest.raises(Incompatible, match="binary but the data has 3 classes"):
        _load(digits_train, label_mode="binary")


def test_validation_classes_must_match_train(tmp_path: Path, digits_train: Path) -> None:
    other = write_image_folder(tmp_path / "val", ["0", "1", "7"], 2)

    with pytest.raises(
        InvalidDataset, match=r"validation has '0', '1', '7', train has '0', '1', '2'"
    ):
        _load(digits_train, other)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no class folders"),
        ({"a": 0, "b": 0}, "no images were found"),
        ({"a": 3}, "at least 2 class folders"),
        ({"a": 3, "b": 0}, r"class folders 'b' hold no images"),
    ],
)
def test_empty_datasets_are_invalid(tmp_path: Path, layout: dict[str, int], message: str) -> None:
    root = tmp_path / "train"
    root.mkdir()
    for name, count in layout.items():
        if count:
            write_image_folder(root, [name], count)
        else:
            (root / name).mkdir()

    with pytest.raises(InvalidDataset, match=message):
        _load(root)


def test_missing_folder_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataset, match=r"dataset\.train: no folder of images"):
        _load(tmp_path / "nowhere")


def test_files_that_are_not_images_are_named(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "train", ["a", "b"], 2)
    (root / "b" / "notes.png").write_text("not an image")

    with pytest.raises(InvalidDataset, match=r"b/notes.png"):
        _load(root)


def test_unsupported_dataset_format(digits_train: Path) -> None:
    with pytest.raises(InvalidDataset, match=r"dataset\.format 'parquet' is not supported") as info:
        _load(digits_train, data_format="parquet")
    assert info.value.field == "dataset.format"


def _validation_pixels(path: Path, data_format: str) -> tuple[np.ndarray, np.ndarray]:
    data = load_image_datasets(
        path,
        path,
        image_shape=(24, 24, 3),  # resized from 32x32: the same way for every format
        batch_size=64,
        label_mode="int",
        validation_split=0,
        seed=0,
        data_format=data_format,
    )
    assert data.validation is not None
    images, labels = next(iter(data.validation))
    return images.numpy(), labels.numpy()


def test_folder_npz_and_tfrecord_give_the_same_pixels(tmp_path: Path) -> None:
    import tensorflow as tf

    from tests.helpers.data import digit_images

    folder = write_image_folder(tmp_path / "folder", ["0", "1"], 5, seed=3)
    images, labels = digit_images([0, 1], 5, seed=3)
    np.savez(tmp_path / "d.npz", x=images, y=labels)
    with tf.io.TFRecordWriter(str(tmp_path / "d.tfrecord")) as writer:
        for label, name in enumerate(["0", "1"]):
            for png in sorted((folder / name).iterdir()):
                feature = {
                    "image": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[png.read_bytes()])
                    ),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())

    from_folder = _validation_pixels(folder, "image_folder")
    from_npz = _validation_pixels(tmp_path / "d.npz", "npz")
    from_records = _validation_pixels(tmp_path / "d.tfrecord", "tfrecord")

    for pixels, got_labels in (from_npz, from_records):
        np.testing.assert_array_equal(pixels, from_folder[0])
        np.testing.assert_array_equal(got_labels, from_folder[1])
    assert from_folder[0].shape == (10, 24, 24, 3) and from_folder[0].dtype == np.float32


def test_npz_class_names_and_one_hot_labels(tmp_path: Path) -> None:
    from service.trainer.sources import read_npz

    x = np.zeros((4, 8, 8), dtype=np.uint8)
    y = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.int64), class_names=np.array(["cat", "dog"]))

    examples = read_npz(tmp_path / "d.npz", "dataset.train")

    assert examples.class_names == ["cat", "dog"]
    assert examples.labels.tolist() == [0, 1, 1, 0]
    assert examples.pixels is not None and examples.pixels.shape == (4, 8, 8, 1)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 8, 8, 3))}, "no array y"),
        ({"x": np.zeros((2, 8, 8, 3)), "y": np.array([0, 1, 1])}, "it needs 2 integer labels"),
        ({"x": np.zeros((2, 8)), "y": np.array([0, 1])}, r"x has shape \(2, 8\)"),
        ({"x": np.array([object(), object()]), "y": np.array([0, 1])}, "Python objects"),
    ],
)
def test_malformed_npz_is_invalid(tmp_path: Path, arrays: dict[str, Any], message: str) -> None:
    from service.trainer.sources import read_npz

    np.savez(tmp_path / "d.npz", **arrays)  # object arrays are pickled by numpy here

    with pytest.raises(InvalidDataset, match=message):
        read_npz(tmp_path / "d.npz", "dataset.train")


def test_tfrecord_without_labels_is_invalid(tmp_path: Path) -> None:
    import tensorflow as tf

    from service.trainer.sources import scan_tfrecords

    with tf.io.TFRecordWriter(str(tmp_path / "bad.tfrecord")) as writer:
        feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}
        writer.write(
            tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
        )

    with pytest.raises(InvalidDataset, match="lacks a readable image or label"):
        scan_tfrecords(tmp_path, "dataset.train")
