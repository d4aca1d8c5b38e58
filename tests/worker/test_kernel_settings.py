"""The worker's look at a staged base model: its stored config, read without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest

from service.contract.native_kernels import ONEDNN_AVX2
from service.worker.kernel_settings import kernel_setting_for, read_model_config
from tests.helpers.mini_xception import mini_xception
from tests.helpers.models import build_tiny_cnn
from tests.helpers.plans import training_plan


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import tf_keras

    root = tmp_path_factory.mktemp("configs")
    paths = {
        "keras3": root / "mini_xception.keras",
        "keras2": root / "mini_xception.h5",
        "tiny": root / "tiny.keras",
    }
    mini_xception(keras).save(paths["keras3"])
    # A Keras 2 file stores no shapes: the look follows them from the input's.
    mini_xception(tf_keras).save(str(paths["keras2"]), save_format="h5")
    build_tiny_cnn().save(paths["tiny"])
    return paths


@pytest.mark.parametrize("kind", ["keras3", "keras2"])
def test_the_mini_xception_file_gets_avx2_when_its_layers_train(
    files: dict[str, Path], kind: str
) -> None:
    config = read_model_config(files[kind])
    assert config is not None and config["class_name"] in {"Functional", "Model"}
    setting = kernel_setting_for(training_plan(freeze={"first_n": 10}), files[kind])
    assert setting is not None and setting.environment == ONEDNN_AVX2
    ((layer, shape),) = [(h.layer, h.input_shape) for h in setting.hazards]
    assert shape == (60, 60, 8) and layer.startswith("conv2d")


def test_no_setting_where_the_base_stays_frozen_or_nothing_crashes(
    files: dict[str, Path], tmp_path: Path
) -> None:
    assert kernel_setting_for(training_plan(freeze="base"), files["keras3"]) is None
    assert kernel_setting_for(training_plan(freeze="none"), files["tiny"]) is None
    folder = tmp_path / "saved_model"
    folder.mkdir()
    assert read_model_config(folder) is None
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    assert read_model_config(broken) is None
    assert kernel_setting_for(training_plan(freeze="none"), broken) is None
