"""The cache budget: decoded images are kept in memory only while they fit, else streamed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from service.trainer.data import (
    ImageDatasets,
    cache_budget_bytes,
    load_image_datasets,
    plan_caching,
)
from tests.helpers.data import write_image_folder

SHAPE = (32, 32, 3)
IMAGE_BYTES = 32 * 32 * 3


def _load(train: Path, cache_mb: float, seed: int = 0) -> ImageDatasets:
    return load_image_datasets(
        train,
        None,
        image_shape=SHAPE,
        batch_size=8,
        label_mode="int",
        validation_split=0.25,
        seed=seed,
        cache_mb=cache_mb,
    )


def _epoch(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def test_each_pipeline_caches_while_it_fits_what_is_left() -> None:
    assert plan_caching([10, 4], SHAPE, 14 * IMAGE_BYTES) == [True, True]
    assert plan_caching([10, 4], SHAPE, 13 * IMAGE_BYTES) == [True, False]
    assert plan_caching([10, 4], SHAPE, 9 * IMAGE_BYTES) == [False, True]
    assert plan_caching([10, 4], SHAPE, 0) == [False, False]


def test_budget_is_given_in_megabytes() -> None:
    assert cache_budget_bytes(1.5) == 1.5 * 2**20
    assert cache_budget_bytes(0) == 0
    assert cache_budget_bytes(None) > 0  # a share of the machine's memory
    with pytest.raises(ValueError, match="0 or more megabytes"):
        cache_budget_bytes(-1)


def test_over_budget_data_is_streamed_from_the_files_every_epoch(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "train", ["a", "b"], 12)
    # 18 training and 6 validation images: the budget holds the validation images only.
    streamed = _load(root, cache_mb=10 * IMAGE_BYTES / 2**20)
    assert streamed.cached == (False, True)

    images, labels = _epoch(streamed.train)
    assert images.shape == (18, *SHAPE) and sorted(labels.tolist()) == [0] * 9 + [1] * 9
    assert streamed.validation is not None
    _epoch(streamed.validation)

    # Streamed means read again: with the files gone the next training epoch cannot be read,
    # while the cached validation images are still there.
    shutil.rmtree(root)
    with pytest.raises(tf.errors.NotFoundError):
        _epoch(streamed.train)
    assert _epoch(streamed.validation)[0].shape == (6, *SHAPE)


def test_cached_data_is_read_once(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "train", ["a", "b"], 12)
    cached = _load(root, cache_mb=64)
    assert cached.cached == (True, True)

    first = _epoch(cached.train)
    shutil.rmtree(root)
    second = _epoch(cached.train)
    assert second[0].shape == first[0].shape
    assert sorted(second[1].tolist()) == sorted(first[1].tolist())


def test_streamed_order_is_reshuffled_each_epoch_and_fixed_by_the_seed(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "train", ["a", "b", "c"], 20)
    one, again = _load(root, cache_mb=0, seed=5), _load(root, cache_mb=0, seed=5)
    assert one.cached == (False, False)

    first_epoch, second_epoch = _epoch(one.train), _epoch(one.train)
    np.testing.assert_array_equal(first_epoch[0], _epoch(again.train)[0])
    assert not np.array_equal(first_epoch[1], second_epoch[1])
    assert sorted(first_epoch[1].tolist()) == sorted(second_epoch[1].tolist())
    # The same images as the cached pipeline, pixel for pixel (only the order may differ).
    cached_images = _epoch(_load(root, cache_mb=64, seed=5).train)[0]
    assert sorted(map(bytes, first_epoch[0])) == sorted(map(bytes, cached_images))
