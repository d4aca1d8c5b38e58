"""Model files over the caps are refused before the model is built, as invalid_model.

The files are the real tiny CNN with its config.json edited: nested 100,000 levels deep (Python's
JSON parser raised RecursionError on it), an input of 200,000 x 200,000 pixels (built and
trained, it would ask for 480 GB per image), or checked against a parameter limit below its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest

from service.trainer.errors import InvalidModel
from service.trainer.loading import open_base_model
from service.trainer.model_safety import MAX_CONFIG_DEPTH, ModelLimits, config_depth
from tests.helpers.legacy_models import deeply_nested, huge_input, tf_keras_planting_saved_model

LIMITS = ModelLimits(max_input_pixels=4096 * 4096, max_params=1_000_000_000)


@pytest.mark.parametrize("levels", [100_000, MAX_CONFIG_DEPTH + 1])
def test_deeply_nested_keras_config_is_an_invalid_model(
    levels: int, pretrained_keras: Path, tmp_path: Path
) -> None:
    path = deeply_nested(pretrained_keras, tmp_path / "deep.keras", levels)

    with pytest.raises(InvalidModel, match=f"nests more than {MAX_CONFIG_DEPTH} levels deep"):
        open_base_model(path)


def test_deeply_nested_h5_config_is_an_invalid_model(pretrained_h5: Path, tmp_path: Path) -> None:
    path = shutil.copyfile(pretrained_h5, tmp_path / "deep.h5")
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        config["config"]["layers"][1]["config"]["nested"] = "NESTED"
        text = json.dumps(config).replace('"NESTED"', "[" * 100_000 + "]" * 100_000)
        handle.attrs["model_config"] = text

    with pytest.raises(InvalidModel, match="nests more than"):
        open_base_model(path)


def test_config_depth_counts_without_recursion() -> None:
    assert config_depth({"a": [1, {"b": []}]}) == 4
    assert config_depth(1) == 0


def test_huge_declared_input_is_refused_before_building(
    pretrained_keras: Path, tmp_path: Path
) -> None:
    path = huge_input(pretrained_keras, tmp_path / "huge.keras")

    with pytest.raises(InvalidModel) as refused:
        open_base_model(path, limits=LIMITS)

    message = refused.value.message
    assert "(None, 200000, 200000, 3)" in message and "40,000,000,000 pixels" in message
    assert "FINETUNE_MAX_INPUT_PIXELS" in message and "16,777,216" in message
    assert refused.value.field == "base_model.uri"


def test_parameters_over_the_limit_are_refused_from_the_stored_weights(
    pretrained_keras: Path, pretrained_h5: Path
) -> None:
    params = open_base_model(pretrained_keras).model.count_params()
    limits = ModelLimits(max_input_pixels=4096 * 4096, max_params=params - 1)

    for path in (pretrained_keras, pretrained_h5):
        with pytest.raises(InvalidModel, match=rf"has {params:,} parameters \(stored in the file"):
            open_base_model(path, limits=limits)
    assert open_base_model(pretrained_keras, limits=LIMITS).model.count_params() == params


def test_saved_model_parameters_are_counted_from_the_checkpoint(tmp_path: Path) -> None:
    folder = tf_keras_planting_saved_model(tmp_path / "saved_model", tmp_path / "marker")

    with pytest.raises(InvalidModel, match=r"parameters \(stored in the checkpoint"):
        open_base_model(folder, limits=ModelLimits(max_input_pixels=1024, max_params=10))
