"""Fixtures for the trainer tests: a really pretrained tiny CNN and digit image folders."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest

from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn

#: The digits the fine-tuning data shows; the base was pretrained on others (5-9).
CLASSES = ("0", "1", "2")


@pytest.fixture(scope="session")
def pretrained_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CNN pretrained on digits 5-9 (5 outputs), saved as .keras."""
    path = tmp_path_factory.mktemp("base") / "base.keras"
    pretrain_tiny_cnn(path)
    return path


@pytest.fixture(scope="session")
def pretrained_h5(pretrained_keras: Path) -> Path:
    """The same model saved as .h5 by Keras 3."""
    path = pretrained_keras.with_name("base.h5")
    keras.saving.load_model(pretrained_keras, compile=False).save(path)
    return path


@pytest.fixture(scope="session")
def digits_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits 0, 1, 2: 40 PNGs each at 32x32."""
    return write_image_folder(tmp_path_factory.mktemp("data") / "train", CLASSES, 40, seed=1)


@pytest.fixture(scope="session")
def digits_validation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits 0, 1, 2: 12 other PNGs each at 32x32."""
    return write_image_folder(tmp_path_factory.mktemp("data") / "validation", CLASSES, 12, seed=2)
