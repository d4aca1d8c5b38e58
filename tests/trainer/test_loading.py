"""Opening base model files: .keras and .h5 in safe mode; everything else refused clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from service.trainer.errors import InvalidModel
from service.trainer.loading import detect_format, load_base_model, open_base_model
from tests.helpers.models import TINY_CNN_LAYERS


@pytest.mark.parametrize("fixture", ["pretrained_keras", "pretrained_h5"])
def test_loads_keras_and_h5_files_with_their_weights(
    fixture: str, pretrained_keras: Path, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(fixture)
    reference = keras.saving.load_model(pretrained_keras, compile=False)

    model = load_base_model(path)

    assert tuple(layer.name for layer in model.layers) == TINY_CNN_LAYERS
    for got, want in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_format_comes_from_content_not_file_name(pretrained_keras: Path, tmp_path: Path) -> None:
    # The worker may stage the file under any name.
    staged = tmp_path / "blob"
    shutil.copy(pretrained_keras, staged)

    assert detect_format(staged) == "keras"
    assert len(load_base_model(staged).layers) == len(TINY_CNN_LAYERS)


def test_declared_format_must_match_the_content(pretrained_h5: Path) -> None:
    with pytest.raises(InvalidModel, match=r"base_model\.format is 'keras'.*'h5'"):
        load_base_model(pretrained_h5, declared_format="keras")


def test_serving_only_saved_model_is_refused(tmp_path: Path, pretrained_keras: Path) -> None:
    folder = tmp_path / "export"
    keras.saving.load_model(pretrained_keras).export(str(folder), verbose=False)

    with pytest.raises(InvalidModel, match=r"no keras_metadata.pb.*serving export"):
        load_base_model(folder)


@pytest.mark.parametrize("name", ["keras2.h5", "keras2_saved_model"])
def test_keras2_files_load_as_keras3_models_with_the_same_outputs(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import tf_keras

    from tests.helpers.legacy_models import pretrain_tf_keras_cnn

    path = pretrain_tf_keras_cnn(tmp_path_factory.mktemp("legacy") / name, epochs=1)
    reference = tf_keras.models.load_model(str(path), compile=False)

    loaded = open_base_model(path)

    assert isinstance(loaded.model, keras.Model)
    assert loaded.file_format == ("h5" if name.endswith(".h5") else "saved_model")
    assert loaded.reader == "keras"
    assert tuple(layer.name for layer in loaded.model.layers) == TINY_CNN_LAYERS
    pixels = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        loaded.model.predict(pixels, verbose=0), reference.predict(pixels, verbose=0), atol=1e-6
    )


def test_keras2_depthwise_convolution_config_is_translated(tmp_path: Path) -> None:
    import tf_keras

    inputs = tf_keras.Input((8, 8, 3))
    outputs = tf_keras.layers.DepthwiseConv2D(3, name="dw")(inputs)
    with pytest.warns(UserWarning, match="legacy"):
        tf_keras.Model(inputs, outputs).save(str(tmp_path / "dw.h5"), save_format="h5")

    model = load_base_model(tmp_path / "dw.h5")

    assert isinstance(model.get_layer("dw"), keras.layers.DepthwiseConv2D)


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04broken zip"])
def test_unreadable_file_names_the_file_and_how_to_save(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(content)

    with pytest.raises(InvalidModel, match=r"'model.keras'.*model\.save\('model\.keras'\)") as info:
        load_base_model(path)
    assert "Traceback" not in info.value.message


def test_missing_file_is_an_invalid_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidModel, match="no model file"):
        load_base_model(tmp_path / "nothing.keras")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_is_refused_without_running_its_code(suffix: str, tmp_path: Path) -> None:
    marker = tmp_path / "lambda-ran"
    # The path is a constant in the lambda's own code (Keras 3.15 cannot restore lambda defaults).
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(touch)(inputs)
    path = tmp_path / f"evil{suffix}"
    keras.Model(inputs, outputs).save(path)
    marker.unlink()  # building the model ran the lambda once, here, on purpose

    with pytest.raises(InvalidModel, match="Lambda layer") as info:
        load_base_model(path)

    assert not marker.exists()
    assert "safe_mode" not in info.value.message
    # The check is meaningful: loading the same file unsafely does run the code.
    keras.saving.load_model(path, compile=False, safe_mode=False)
    assert marker.exists()
