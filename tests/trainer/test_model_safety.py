"""Model files that would run code on load are refused before anything loads them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import pytest

from service.trainer.errors import InvalidModel
from service.trainer.loading import open_base_model
from service.trainer.model_safety import check_model_file, find_unsafe
from tests.helpers.legacy_models import (
    keras3_lambda_model,
    keras_with_foreign_module,
    tf_keras_lambda_model,
)


def _tf_keras_load(path: Path) -> None:
    import tf_keras

    tf_keras.models.load_model(str(path), compile=False)


def _keras_unsafe_load(path: Path) -> None:
    keras.saving.load_model(path, compile=False, safe_mode=False)


PAYLOADS: dict[str, tuple[Callable[[Path, Path], Path], str, Callable[[Path], None]]] = {
    # name: (writer, file name, a loader that does run the payload: the check is meaningful)
    "keras3_keras": (keras3_lambda_model, "evil.keras", _keras_unsafe_load),
    "keras3_h5": (keras3_lambda_model, "evil.h5", _keras_unsafe_load),
    "tf_keras_h5": (tf_keras_lambda_model, "evil.h5", _tf_keras_load),
    "tf_keras_saved_model": (tf_keras_lambda_model, "evil_saved_model", _tf_keras_load),
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_lambda_layer_is_refused_and_its_code_never_runs(kind: str, tmp_path: Path) -> None:
    writer, name, unsafe_load = PAYLOADS[kind]
    marker = tmp_path / "payload-ran"
    path = writer(tmp_path / name, marker)
    assert not marker.exists()

    with pytest.raises(InvalidModel, match=r"Lambda layer \('payload'\)") as info:
        open_base_model(path)

    assert info.value.field == "base_model.uri"
    assert not marker.exists()
    # The file really carries a payload: a loader without the check runs it.
    unsafe_load(path)
    assert marker.exists()


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("module", r"the module 'os' \(outside Keras\)"),
        ("activation", r"the activation 'os.system'"),
    ],
)
def test_config_naming_a_module_outside_keras_is_refused(
    how: str, message: str, tmp_path: Path, pretrained_keras: Path
) -> None:
    crafted = keras_with_foreign_module(pretrained_keras, tmp_path / "crafted.keras", how)

    with pytest.raises(InvalidModel, match=message):
        open_base_model(crafted)


def test_sound_models_pass_the_check(pretrained_keras: Path, pretrained_h5: Path) -> None:
    check_model_file(pretrained_keras, "keras")
    check_model_file(pretrained_h5, "h5")


@pytest.mark.parametrize(
    ("config", "found"),
    [
        ({"class_name": "Dense", "module": "keras.layers", "config": {"activation": "relu"}}, None),
        ({"class_name": "X", "module": "keras_evil"}, "the module 'keras_evil'"),
        ({"class_name": "Foo", "registered_name": "my_pkg>Foo"}, "the custom class 'my_pkg>Foo'"),
        ({"layers": [{"class_name": "TFOpLambda", "name": "op"}]}, "a TFOpLambda layer ('op')"),
        ({"a": {"class_name": "__lambda__", "config": {"code": "..."}}}, "a __lambda__ layer"),
        ({"config": {"recurrent_activation": "subprocess.call"}}, "'subprocess.call'"),
    ],
)
def test_find_unsafe_names_what_it_found(config: object, found: str | None) -> None:
    result = find_unsafe(config)
    if found is None:
        assert result is None
    else:
        assert result is not None and found in result
