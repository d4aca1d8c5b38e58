"""Model files written by Keras 2 (tf_keras), and model files that try to run code on load.

tf_keras is the real Keras 2 (``tf_keras==2.21.0``); the files it writes are what users bring
from older pipelines. Imported only by tests that need it (it loads TensorFlow).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers.data import digit_images


def pretrain_tf_keras_cnn(
    path: Path,
    digits: Sequence[int] = (5, 6, 7, 8, 9),
    per_class: int = 40,
    epochs: int = 3,
    seed: int = 0,
) -> Path:
    """The tiny CNN of tests.helpers.models, built and trained by tf_keras, saved at ``path``.

    A path ending in '.h5' is written as HDF5; any other path as a Keras 2 SavedModel folder.
    """
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    inputs = tf_keras.Input(shape=(32, 32, 3), name="input")
    x = inputs
    for block, filters in enumerate((8, 16, 32), start=1):
        x = tf_keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{block}")(x)
        x = tf_keras.layers.BatchNormalization(momentum=0.9, name=f"bn{block}")(x)
        x = tf_keras.layers.ReLU(name=f"relu{block}")(x)
        if block < 3:
            x = tf_keras.layers.MaxPooling2D(name=f"pool{block}")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = tf_keras.layers.Dense(len(digits), activation="softmax", name="predictions")(x)
    model = tf_keras.Model(inputs, outputs, name="keras2_tiny_cnn")
    images, labels = digit_images(digits, per_class, size=32, seed=seed + 1000)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    model.fit(
        images.astype(np.float32) / 255.0,
        tf_keras.utils.to_categorical(labels, len(digits)),
        batch_size=32,
        epochs=epochs,
        verbose=0,
    )
    _save_tf_keras(model, path)
    return path


def _save_tf_keras(model: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix == ".h5":
            model.save(str(path), save_format="h5")
        else:
            model.save(str(path), save_format="tf")


def touching_lambda(marker: Path) -> Any:
    """A lambda that creates ``marker`` when it runs, its path a constant in its own code."""
    return eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")


def keras3_lambda_model(path: Path, marker: Path) -> Path:
    """A Keras 3 ``.keras`` or ``.h5`` model with a Lambda layer whose code creates ``marker``."""
    import keras

    inputs = keras.Input((32, 32, 3), name="input")
    x = keras.layers.Lambda(touching_lambda(marker), name="payload")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once, here, on purpose
    return path


def tf_keras_lambda_model(path: Path, marker: Path) -> Path:
    """A tf_keras ``.h5`` or SavedModel folder with a Lambda whose code creates ``marker``."""
    import tf_keras

    inputs = tf_keras.Input((32, 32, 3), name="input")
    x = tf_keras.layers.Lambda(touching_lambda(marker), name="payload")(inputs)
    outputs = tf_keras.layers.Dense(2, activation="softmax")(tf_keras.layers.Flatten()(x))
    _save_tf_keras(tf_keras.Model(inputs, outputs), path)
    marker.unlink(missing_ok=True)
    return path


def keras_with_foreign_module(source: Path, path: Path, how: str) -> Path:
    """A copy of a ``.keras`` file whose config names ``os.system``.

    Args:
        source: A sound ``.keras`` file.
        path: Where to write the crafted copy.
        how: ``module``: the first Dense-like layer's activation becomes
            ``{"module": "os", "class_name": "system", ...}``; ``activation``: it becomes the
            string ``"os.system"``.
    """
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    for layer in config["config"]["layers"]:
        if "activation" in layer["config"]:
            layer["config"]["activation"] = (
                {"module": "os", "class_name": "system", "config": "touch", "registered_name": None}
                if how == "module"
                else "os.system"
            )
            break
    else:  # pragma: no cover - the helper's own misuse
        raise ValueError("no layer with an activation")
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def tf_keras_planting_saved_model(path: Path, marker: Path) -> Path:
    """A Keras 2 SavedModel folder that writes ``marker`` when TensorFlow's loader restores it.

    Its keras_metadata.pb lists only ordinary layers (conv, batch norm, pooling, dense; trained
    a little so the moving statistics are not the defaults). Its object graph also holds what a
    plain config check cannot see: a TrackableResource whose initializer runs
    ``tf.io.write_file(marker)`` (restoring the object graph runs it), an extra ``tf.function``
    that writes ``marker`` + ``.fn`` when called, and an asset file. Beside the folder,
    ``<path>.expected.npz`` holds pixels and the predictions of the model as tf_keras built it.
    """
    import tensorflow as tf
    import tf_keras

    target = str(marker)

    class PlantingResource(tf.saved_model.experimental.TrackableResource):  # type: ignore[misc]
        def _create_resource(self) -> Any:
            return tf.raw_ops.VarHandleOp(
                dtype=tf.float32, shape=[], shared_name=f"planting-{abs(hash(target))}"
            )

        def _initialize(self) -> Any:
            tf.io.write_file(target, "planted by a model file")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)

    @tf.function(input_signature=[])  # type: ignore[misc]
    def extra() -> Any:
        tf.io.write_file(target + ".fn", "written by a stored function")
        return tf.constant(1.0)

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((32, 32, 3), name="input")
    x = tf_keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = tf_keras.layers.BatchNormalization(name="bn1")(x)
    x = tf_keras.layers.ReLU(name="relu1")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = tf_keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = tf_keras.Model(inputs, outputs, name="innocent_looking")
    images, labels = digit_images((0, 1, 2), 10, size=32, seed=5)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images.astype(np.float32) / 255.0, labels, epochs=2, verbose=0)
    model.planting = PlantingResource()
    model.extra = extra
    path.parent.mkdir(parents=True, exist_ok=True)
    asset = path.parent / f"{path.name}-asset.txt"
    asset.write_text("an asset")
    model.note = tf.saved_model.Asset(str(asset))
    _save_tf_keras(model, path)
    marker.unlink(missing_ok=True)  # nothing ran yet; make sure
    pixels = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    np.savez(
        str(path) + ".expected.npz", pixels=pixels, predictions=model.predict(pixels, verbose=0)
    )
    return path


def keras_with_config_text(source: Path, path: Path, edit: Any) -> Path:
    """A copy of a ``.keras`` file whose config.json text is ``edit(text)``."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = edit(members["config.json"].decode()).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def deeply_nested(source: Path, path: Path, levels: int = 100_000) -> Path:
    """A copy of a ``.keras`` file whose second layer holds a list nested ``levels`` deep."""

    def edit(text: str) -> str:
        config = json.loads(text)
        config["config"]["layers"][1]["config"]["nested"] = "NESTED"
        return json.dumps(config).replace('"NESTED"', "[" * levels + "]" * levels)

    return keras_with_config_text(source, path, edit)


def huge_input(source: Path, path: Path, side: int = 200_000) -> Path:
    """A copy of a ``.keras`` file whose input layer declares ``side`` x ``side`` images."""

    def edit(text: str) -> str:
        config = json.loads(text)
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "InputLayer":
                layer["config"]["batch_shape"] = [None, side, side, 3]
        return json.dumps(config)

    return keras_with_config_text(source, path, edit)


def copy_tree(source: Path, dest: Path) -> Path:
    """A copy of a file or folder."""
    if source.is_dir():
        shutil.copytree(source, dest)
    else:
        shutil.copyfile(source, dest)
    return dest


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
