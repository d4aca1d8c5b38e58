"""HDF5 model and weights files that point at other files of the machine are refused.

An external link, a virtual dataset or a dataset with external storage makes h5py read another
file when the member is read (the control test shows it does): a model's weights would carry
a file of the worker into a published model. The files are real Keras 3 models (.h5, .keras)
with such a member added by h5py, and a real weights file for a named architecture.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from service.trainer.architectures import weights_layout
from service.trainer.errors import InvalidModel
from service.trainer.loading import open_base_model

SECRET = np.arange(16, dtype="float32")


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """An HDF5 file of the machine that a model file must not be able to read."""
    path = tmp_path / "secret.h5"
    with h5py.File(path, "w") as handle:
        handle["data"] = SECRET
    return path


def _external_link(group: h5py.Group, secret: Path) -> None:
    group["leak"] = h5py.ExternalLink(str(secret), "/data")


def _virtual_dataset(group: h5py.Group, secret: Path) -> None:
    layout = h5py.VirtualLayout(shape=SECRET.shape, dtype=SECRET.dtype)
    layout[:] = h5py.VirtualSource(str(secret), "data", shape=SECRET.shape)
    group.create_virtual_dataset("leak", layout)


def _external_storage(group: h5py.Group, secret: Path) -> None:
    group.create_dataset("leak", shape=(4,), dtype="uint8", external=[(str(secret), 0, 4)])


PLANTS: dict[str, Callable[[h5py.Group, Path], None]] = {
    "external link": _external_link,
    "virtual dataset": _virtual_dataset,
    "dataset '/model_weights/leak' stored in external files": _external_storage,
}


@pytest.mark.parametrize("plant", list(PLANTS))
def test_control_h5py_reads_the_other_file_through_it(
    plant: str, secret_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "planted.h5"
    with h5py.File(path, "w") as handle:
        PLANTS[plant](handle.create_group("model_weights"), secret_file)
    with h5py.File(path, "r") as handle:
        assert np.asarray(handle["model_weights/leak"]).size > 0


@pytest.mark.parametrize("plant", list(PLANTS))
def test_h5_model_pointing_outside_is_refused(
    plant: str, pretrained_h5: Path, secret_file: Path, tmp_path: Path
) -> None:
    path = shutil.copyfile(pretrained_h5, tmp_path / "model.h5")
    with h5py.File(path, "r+") as handle:
        PLANTS[plant](handle["model_weights"], secret_file)

    with pytest.raises(InvalidModel, match=f"base_model.uri: .model.h5. holds an? {plant}"):
        open_base_model(path)


def test_keras_file_whose_weights_point_outside_is_refused(
    pretrained_keras: Path, secret_file: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(pretrained_keras) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = tmp_path / "model.weights.h5"
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "r+") as handle:
        _external_link(handle, secret_file)
    members["model.weights.h5"] = weights.read_bytes()
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)

    with pytest.raises(InvalidModel, match=r"model\.weights\.h5.*external link 'leak'"):
        open_base_model(path)


def test_weights_file_pointing_outside_is_refused(
    pretrained_h5: Path, secret_file: Path, tmp_path: Path
) -> None:
    path = shutil.copyfile(pretrained_h5, tmp_path / "weights.h5")
    with h5py.File(path, "r+") as handle:
        _virtual_dataset(handle["model_weights"], secret_file)

    with pytest.raises(InvalidModel, match=r"weights_uri: 'weights\.h5' holds a virtual"):
        weights_layout(path, "weights.h5")


def test_sound_files_pass(pretrained_keras: Path, pretrained_h5: Path) -> None:
    assert open_base_model(pretrained_keras).model.layers
    assert weights_layout(pretrained_h5, "base.h5") == "legacy"
