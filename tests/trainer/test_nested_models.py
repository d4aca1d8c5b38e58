"""A base that nests a whole model (Keras's transfer-learning pattern) is seen through.

The outer model calls a small functional CNN as one layer, ``base(inputs, training=False)``;
``head.cut_at``, every freeze rule, frozen BatchNormalization and the reports address its inner
layers, and the model built to train is flat.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from service.contract.messages import Info
from service.contract.plan import FreezeRule
from service.trainer.errors import Incompatible
from service.trainer.freezing import Freezer, select_frozen
from service.trainer.inspection import inspect
from service.trainer.model_surgery import BuiltModel, build_model
from service.trainer.nesting import BaseLayers
from service.trainer.run import train
from tests.helpers.plans import head_settings
from tests.trainer.support import Recorder, make_request

INNER = "tinynet_0.5"
INNER_LAYERS = ("conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2")


def _inner(name: str = INNER) -> keras.Model:
    """A small functional CNN without a top (its own InputLayer first)."""
    inputs = keras.Input((32, 32, 3), name="input_1")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    return keras.Model(inputs, x, name=name)


def nested_model(inner: keras.Model | None = None) -> keras.Model:
    """The guide's pattern: an Input, the base called with training=False, GAP, Dense."""
    base = _inner() if inner is None else inner
    inputs = keras.Input((32, 32, 3), name="image_in")
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="transfer")


FLAT = ("image_in", *(f"{INNER}/{name}" for name in INNER_LAYERS), "gap", "predictions")


def _built(model: keras.Model, cut_at: int | str = "gap") -> BuiltModel:
    return build_model(
        model,
        image_shape=(32, 32, 3),
        preprocessing="rescale",
        head=head_settings(cut_at=cut_at),
        num_classes=3,
        label_mode="categorical",
    )


def test_layers_are_flattened_in_order_with_qualified_names() -> None:
    inner = _inner()
    flat = BaseLayers.of(nested_model(inner))

    assert flat.paths == FLAT
    assert flat.nested == {INNER: (1, 8)}
    # first_n counts as for the nested model saved alone: its input layer is 0 there too.
    alone = [layer.name for layer in inner.layers]
    assert [layer.name for layer in flat.layers[1:4]] == alone[1:4]


@pytest.mark.parametrize(
    ("cut_at", "cut_layer", "feature_shape"),
    [
        ("bn1", f"{INNER}/bn1", (32, 32, 4)),
        (f"{INNER}/pool1", f"{INNER}/pool1", (16, 16, 4)),
        (INNER, INNER, (16, 16, 8)),
        (5, f"{INNER}/conv2", (16, 16, 8)),
        ("gap", "gap", (8,)),
    ],
)
def test_cut_at_an_inner_layer_or_the_nested_model(
    cut_at: int | str, cut_layer: str, feature_shape: tuple[int, ...]
) -> None:
    inner = _inner()
    built = _built(nested_model(inner), cut_at)

    assert built.cut_layer == cut_layer
    assert built.feature_shape == feature_shape
    # Flat: the inner layers themselves (same objects, same weights), no nested model.
    assert not any(isinstance(layer, keras.Model) for layer in built.model.layers)
    assert built.model.get_layer("conv1") is inner.get_layer("conv1")


@pytest.mark.parametrize(
    ("rule", "frozen"),
    [
        (FreezeRule("none", None), ()),
        (FreezeRule("base", None), FLAT),
        (FreezeRule("first_n", 3), FLAT[:3]),
        (FreezeRule("until", "bn2"), FLAT[:7]),
        (FreezeRule("until", f"{INNER}/pool1"), FLAT[:5]),
        (FreezeRule("until", INNER), FLAT[:8]),
        (FreezeRule("pattern", "^bn"), (f"{INNER}/bn1", f"{INNER}/bn2")),
        (FreezeRule("pattern", f"^{INNER}/conv"), (f"{INNER}/conv1", f"{INNER}/conv2")),
    ],
)
def test_freeze_rules_see_through_the_nesting(rule: FreezeRule, frozen: tuple[str, ...]) -> None:
    flat = BaseLayers.of(nested_model())
    assert tuple(flat.path(layer) for layer in select_frozen(rule, flat)) == frozen


def test_a_name_two_nested_models_share_asks_for_the_qualified_one() -> None:
    inputs = keras.Input((32, 32, 3), name="image_in")
    x = _inner("left")(inputs)
    y = _inner("right")(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate(name="both")([x, y]))

    with pytest.raises(Incompatible, match=r"2 layers are named 'bn2' \('left/bn2', 'right/bn2'\)"):
        select_frozen(FreezeRule("until", "bn2"), BaseLayers.of(model))
    built = _built(model, "right/bn2")
    # The flat model needs unique names: the second conv1 is renamed, its path is kept.
    names = [layer.name for layer in built.model.layers]
    assert len(names) == len(set(names))
    assert built.cut_layer == "right/bn2"


def test_frozen_batch_norm_stays_frozen_and_is_named_by_path() -> None:
    built = _built(nested_model())
    freezer = Freezer(built)

    first = freezer.apply(FreezeRule("first_n", 3))
    assert first.frozen_layers == list(FLAT[:3])
    assert first.frozen_batch_norms == [f"{INNER}/bn1"]
    second = freezer.apply(FreezeRule("none", None))
    assert second.frozen_layers == []
    assert second.frozen_batch_norms == [f"{INNER}/bn1"]
    assert built.model.get_layer("conv1").trainable


def test_an_inner_batch_norm_a_rule_froze_keeps_its_statistics_in_fit() -> None:
    built = _built(nested_model())
    Freezer(built).apply(FreezeRule("until", "bn2"))
    model = built.model
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    bn1, bn2 = model.get_layer("bn1"), model.get_layer("bn2")
    before = [np.array(bn.moving_mean) for bn in (bn1, bn2)]
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(images, np.eye(3)[np.arange(8) % 3], epochs=1, batch_size=8, verbose=0)

    for bn, mean in zip((bn1, bn2), before, strict=True):
        assert np.array_equal(np.array(bn.moving_mean), mean), bn.name


@pytest.mark.slow
def test_job_on_a_nested_base_names_inner_layers_and_unfreezes_gradually(
    tmp_path: Path, digits_train: Path
) -> None:
    base = tmp_path / "nested.keras"
    nested_model().save(base)
    schedule = [
        {"epochs": 1, "learning_rate": 1e-3, "freeze": "base"},
        {"epochs": 1, "learning_rate": 1e-4, "freeze": {"until": "relu1"}},
    ]
    sections = {"head": {"cut_at": INNER}, "schedule": schedule}

    inspected = inspect(make_request(tmp_path, base, digits_train, **sections))
    assert inspected.errors == {}
    report = inspected.report
    assert [layer["name"] for layer in report["model"]["layers"]] == list(FLAT)
    assert report["head"]["cut_layer"] == INNER
    assert report["phases"][1]["frozen_layers"] == list(FLAT[:4])
    assert report["phases"][1]["frozen_batch_norms"] == [f"{INNER}/bn1", f"{INNER}/bn2"]

    report_events = Recorder()
    request = make_request(tmp_path, base, digits_train, **sections)
    before = keras.saving.load_model(base, compile=False).get_layer(INNER)
    train(request, report_events)

    phases = [m for m in report_events.of_type(Info) if "phase_index" in m.data]
    assert phases[1].data["frozen_layers"] == list(FLAT[:4])
    trained = keras.saving.load_model(tmp_path / "out" / "model.keras", compile=False)
    assert not any(isinstance(layer, keras.Model) for layer in trained.layers)
    for name, changed in (("conv1", False), ("conv2", True)):
        was = before.get_layer(name).get_weights()[0]
        now = trained.get_layer(name).get_weights()[0]
        assert np.array_equal(was, now) is not changed, name
