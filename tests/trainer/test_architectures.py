"""Named architectures: built with weights=None, then loaded from a weights file, checked first.

Small MobileNets at 32x32 keep this fast; the weights files are written in the published layout
and by save_weights (tests/helpers/architectures.py), with distinct random values so that a
load that did nothing would show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.contract.plan import ArchitectureSettings
from service.trainer.architectures import open_architecture, weights_digest
from service.trainer.errors import Incompatible, InvalidModel
from tests.helpers.architectures import build, perturb, write_published_h5, write_weights_h5

pytestmark = pytest.mark.slow

SIZE = (32, 32)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[np.ndarray]]]:
    """Weights files of MobileNetV2 (alpha 0.35 and 0.5, no top and top) and MobileNetV3Small."""
    root = tmp_path_factory.mktemp("weights")
    made: dict[str, tuple[Path, list[np.ndarray]]] = {}
    model = build("MobileNetV2", alpha=0.35)
    values = perturb(model, seed=1)
    made["v2_legacy"] = (write_published_h5(model, root / "v2_035_no_top.h5"), values)
    made["v2_keras3"] = (write_weights_h5(model, root / "v2_035.weights.h5"), values)
    wider = build("MobileNetV2", alpha=0.5)
    made["v2_050_legacy"] = (write_published_h5(wider, root / "v2_050_no_top.h5"), [])
    made["v2_050_keras3"] = (write_weights_h5(wider, root / "v2_050.weights.h5"), [])
    top = build("MobileNetV2", alpha=0.35, include_top=True)
    top_values = perturb(top, 2)
    made["v2_top_legacy"] = (write_published_h5(top, root / "v2_035_top.h5"), top_values)
    small = build("MobileNetV3Small", alpha=0.75, minimalistic=True)
    small_values = perturb(small, 3)
    made["v3_legacy"] = (write_published_h5(small, root / "v3s.h5"), small_values)
    return made


def _equal(loaded: list[np.ndarray], written: list[np.ndarray]) -> None:
    assert len(loaded) == len(written)
    for got, want in zip(loaded, written, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("which", ["v2_legacy", "v2_keras3"])
def test_mobilenet_v2_loads_the_written_weights(
    files: dict[str, tuple[Path, list[np.ndarray]]], which: str
) -> None:
    path, written = files[which]
    settings = ArchitectureSettings("MobileNetV2", {"alpha": 0.35})

    loaded = open_architecture(settings, path, SIZE)

    _equal([w.numpy() for w in loaded.model.weights], written)
    assert loaded.weights_digest == weights_digest(written)
    assert loaded.layout == ("legacy" if which == "v2_legacy" else "keras3")
    assert loaded.weights_loaded == len(written) == 260
    assert loaded.layers_loaded == 104  # conv, depthwise and BN layers
    assert loaded.model.get_layer("block_13_expand") is not None
    assert len(loaded.file_sha256) == 64


def test_with_top_and_another_architecture_load_too(
    files: dict[str, tuple[Path, list[np.ndarray]]],
) -> None:
    path, written = files["v2_top_legacy"]
    top = open_architecture(
        ArchitectureSettings("MobileNetV2", {"alpha": 0.35, "include_top": True}), path, SIZE
    )
    _equal([w.numpy() for w in top.model.weights], written)
    assert top.model.output_shape == (None, 1000)

    path, written = files["v3_legacy"]
    small = open_architecture(
        ArchitectureSettings("MobileNetV3Small", {"alpha": 0.75, "minimalistic": True}),
        path,
        SIZE,
    )
    _equal([w.numpy() for w in small.model.weights], written)


@pytest.mark.parametrize("which", ["v2_050_legacy", "v2_050_keras3"])
def test_weights_of_another_alpha_are_incompatible_naming_both(
    files: dict[str, tuple[Path, list[np.ndarray]]], which: str
) -> None:
    path, _ = files[which]

    with pytest.raises(Incompatible) as caught:
        open_architecture(ArchitectureSettings("MobileNetV2", {"alpha": 0.35}), path, SIZE)

    message = caught.value.message
    assert caught.value.field == "base_model.weights_uri"
    assert "MobileNetV2(alpha=0.35, include_top=False)" in message
    assert path.name in message
    assert "shape" in message and "Traceback" not in message


def test_a_with_top_file_for_a_no_top_build_is_incompatible(
    files: dict[str, tuple[Path, list[np.ndarray]]],
) -> None:
    path, _ = files["v2_top_legacy"]

    with pytest.raises(Incompatible) as caught:
        open_architecture(ArchitectureSettings("MobileNetV2", {"alpha": 0.35}), path, SIZE)

    message = caught.value.message
    assert "MobileNetV2(alpha=0.35, include_top=False)" in message and path.name in message
    assert "'predictions'" in message and "include_top" in message


def test_another_architecture_s_file_is_incompatible(
    files: dict[str, tuple[Path, list[np.ndarray]]],
) -> None:
    path, _ = files["v3_legacy"]

    with pytest.raises(Incompatible, match=r"MobileNetV2\(alpha=0.35.*v3s\.h5"):
        open_architecture(ArchitectureSettings("MobileNetV2", {"alpha": 0.35}), path, SIZE)


def test_a_file_that_is_not_hdf5_is_refused(tmp_path: Path) -> None:
    pickle_like = tmp_path / "weights.h5"
    pickle_like.write_bytes(b"\x80\x04\x95not hdf5 at all")

    with pytest.raises(InvalidModel, match="not an HDF5 file"):
        open_architecture(ArchitectureSettings("MobileNetV2", {"alpha": 0.35}), pickle_like, SIZE)


def test_a_whole_saved_model_h5_is_not_a_weights_file(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = "{}"

    with pytest.raises(InvalidModel, match="holds no Keras weights"):
        open_architecture(ArchitectureSettings("MobileNetV2", {"alpha": 0.35}), path, SIZE)


def test_every_allowed_architecture_is_a_keras_applications_constructor() -> None:
    import keras

    from service.contract.architectures import ARCHITECTURES

    missing = [name for name in ARCHITECTURES if not hasattr(keras.applications, name)]
    assert missing == []


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined:UserWarning")
@pytest.mark.parametrize(
    ("name", "options", "early"),
    [("MobileNetV2", {"alpha": 0.35}, "Conv1"), ("EfficientNetB0", {}, "stem_conv")],
)
def test_same_model_as_keras_own_imagenet_loading(
    name: str,
    options: dict[str, float],
    early: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keras's own ``weights="imagenet"`` path, given the file we wrote, computes the same.

    The one stand-in: Keras's download (``file_utils.get_file``) returns the local file, as
    there is no internet here. This checks the published layout written by the test helper is
    what Keras's ImageNet loader reads, and that the service's model (built with
    ``weights=None``, e.g. EfficientNet without its ImageNet-only rescaling) matches Keras's.
    """
    import keras
    from keras.src.utils import file_utils

    source = build(name, **options)
    perturb(source, seed=5)
    path = write_published_h5(source, tmp_path / f"{name}_no_top.h5")
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(path))
    reference = getattr(keras.applications, name)(
        weights="imagenet", include_top=False, input_shape=(32, 32, 3), **options
    )

    ours = open_architecture(ArchitectureSettings(name, dict(options)), path, SIZE).model

    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    # An early layer too: in a deep net of random weights the input's effect on the last
    # layer can vanish, and the check would see nothing.
    for a, b in ((ours, reference), (_upto(ours, early), _upto(reference, early))):
        want = b.predict(pixels, verbose=0)
        assert float(np.std(want)) > 1e-3
        np.testing.assert_allclose(a.predict(pixels, verbose=0), want, rtol=1e-4, atol=1e-4)


def _upto(model: Any, layer: str) -> Any:
    import keras

    return keras.Model(model.inputs, model.get_layer(layer).output)
