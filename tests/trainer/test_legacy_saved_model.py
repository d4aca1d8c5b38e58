"""Keras 2 SavedModel folders rebuilt as data: same predictions, nothing from the folder run.

The folders are written by the real tf_keras; the planting one holds a resource initializer
that writes a file when TensorFlow's SavedModel loader restores it (the control test shows
that it does), an extra tf.function and an asset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.trainer.errors import InvalidModel
from service.trainer.loading import open_base_model
from tests.helpers.legacy_models import _save_tf_keras, tf_keras_planting_saved_model


@pytest.fixture(scope="module")
def planting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The planting folder and the marker file its initializer writes."""
    root = tmp_path_factory.mktemp("planting")
    marker = root / "planted.txt"
    return tf_keras_planting_saved_model(root / "saved_model", marker), marker


def test_control_tensorflow_loader_runs_the_initializer(
    planting: tuple[Path, Path], tmp_path: Path
) -> None:
    """What the service must never do: tf_keras load_model writes the marker."""
    import tf_keras

    from tests.helpers.legacy_models import copy_tree

    folder, marker = planting
    copy = copy_tree(folder, tmp_path / "copy")
    tf_keras.models.load_model(str(copy), compile=False)
    assert marker.exists()
    marker.unlink()


def test_planting_folder_is_rebuilt_and_nothing_of_it_runs(planting: tuple[Path, Path]) -> None:
    folder, marker = planting

    loaded = open_base_model(folder)

    assert not marker.exists() and not Path(f"{marker}.fn").exists()
    expected = np.load(str(folder) + ".expected.npz")
    np.testing.assert_allclose(
        loaded.model.predict(expected["pixels"], verbose=0), expected["predictions"], atol=1e-5
    )
    assert loaded.file_format == "saved_model" and loaded.reader == "keras"
    assert loaded.written_by == "2.21.0"
    ignored = "; ".join(loaded.ignored)
    for part in ("planting (added", "extra (added", "note (added", "1 resources", "1 assets"):
        assert part in ignored, ignored
    assert not marker.exists()


def _sequential_bn(tf_keras: Any) -> Any:
    return tf_keras.Sequential(
        [
            tf_keras.Input((16, 16, 3)),
            tf_keras.layers.Conv2D(4, 3, name="conv"),
            tf_keras.layers.BatchNormalization(name="bn"),
            tf_keras.layers.Flatten(name="flat"),
            tf_keras.layers.Dense(2, name="out"),
        ],
        name="seq",
    )


def _frozen_bn_and_depthwise(tf_keras: Any) -> Any:
    """A frozen BN (its weights all non-trainable) and a DepthwiseConv2D (Keras 2's groups)."""
    inputs = tf_keras.Input((16, 16, 3), name="image")
    x = tf_keras.layers.Conv2D(4, 3, name="conv")(inputs)
    frozen = tf_keras.layers.BatchNormalization(name="frozen_bn")
    x = tf_keras.layers.DepthwiseConv2D(3, name="dw")(frozen(x))
    x = tf_keras.layers.BatchNormalization(name="bn")(x)
    y = tf_keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="out")(y), name="flat")
    frozen.trainable = False
    return model


@pytest.mark.parametrize("build", [_sequential_bn, _frozen_bn_and_depthwise])
def test_rebuilt_models_predict_as_tf_keras_built_them(
    build: Callable[[Any], Any], tmp_path: Path
) -> None:
    import tf_keras

    tf_keras.utils.set_random_seed(1)
    model = build(tf_keras)
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 1, (16, 16, 16, 3)).astype("float32")
    model.compile(optimizer="adam", loss="mse")
    model.fit(images, rng.uniform(0, 1, (16, 2)), epochs=2, verbose=0)  # moving stats move
    _save_tf_keras(model, tmp_path / "folder")
    stats = {w.name.split(":")[0]: w.numpy() for w in model.weights if "moving" in w.name}

    loaded = open_base_model(tmp_path / "folder")

    np.testing.assert_allclose(
        loaded.model.predict(images[:4], verbose=0),
        model.predict(images[:4], verbose=0),
        atol=1e-5,
    )
    restored = {
        f"{layer.name}/{w.name}": np.asarray(w)
        for layer in loaded.model.layers
        for w in layer.weights
        if "moving" in w.name
    }
    assert set(restored) == set(stats) and stats
    moved = [n for n, v in stats.items() if n.endswith("moving_mean") and not np.allclose(v, 0)]
    assert "bn/moving_mean" in moved, moved
    for name, value in stats.items():
        np.testing.assert_allclose(restored[name], value, atol=1e-6)


def test_subclassed_model_is_refused_without_loading(tmp_path: Path) -> None:
    import tf_keras

    class Net(tf_keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = tf_keras.layers.Dense(2)

        def call(self, inputs: Any) -> Any:
            return self.dense(inputs)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    _save_tf_keras(net, tmp_path / "sub")

    with pytest.raises(InvalidModel, match="subclassed Keras 2 model"):
        open_base_model(tmp_path / "sub")


def test_missing_variables_are_an_invalid_model(
    planting: tuple[Path, Path], tmp_path: Path
) -> None:
    from tests.helpers.legacy_models import copy_tree

    folder, marker = planting
    copy = copy_tree(folder, tmp_path / "copy")
    (copy / "variables" / "variables.index").unlink()

    with pytest.raises(InvalidModel, match="variables"):
        open_base_model(copy)
    assert not marker.exists()
