"""Freeze rules pick the right base layers; frozen BatchNormalization stays frozen."""

from __future__ import annotations

import keras
import pytest

from service.contract.plan import FreezeRule
from service.trainer.errors import Incompatible
from service.trainer.freezing import Freezer, select_frozen
from service.trainer.model_surgery import BuiltModel, build_model
from tests.helpers.models import TINY_CNN_LAYERS, build_tiny_cnn
from tests.helpers.plans import head_settings


def _built(head: bool = True) -> BuiltModel:
    return build_model(
        build_tiny_cnn(num_classes=3),
        image_shape=(32, 32, 3),
        preprocessing="rescale",
        head=head_settings(hidden_units=[8]) if head else None,
        num_classes=3,
        label_mode="categorical",
    )


def _names(rule: FreezeRule) -> list[str]:
    return [layer.name for layer in select_frozen(rule, build_tiny_cnn().layers)]


@pytest.mark.parametrize(
    ("rule", "frozen"),
    [
        (FreezeRule("none", None), []),
        (FreezeRule("base", None), list(TINY_CNN_LAYERS)),
        (FreezeRule("first_n", 0), []),
        (FreezeRule("first_n", 4), ["input", "conv1", "bn1", "relu1"]),
        (FreezeRule("until", "bn2"), ["input", "conv1", "bn1", "relu1", "pool1", "conv2", "bn2"]),
        (FreezeRule("pattern", "^bn"), ["bn1", "bn2", "bn3"]),
        (FreezeRule("pattern", "conv[12]|gap"), ["conv1", "conv2", "gap"]),
    ],
)
def test_rule_selects_base_layers(rule: FreezeRule, frozen: list[str]) -> None:
    assert _names(rule) == frozen


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (FreezeRule("first_n", 15), r"first_n is 15 but the base model has only 14 layers"),
        (FreezeRule("until", "block_13"), r"no layer named 'block_13'"),
        (FreezeRule("until", "conv_2"), r"Similar names: 'conv2'"),
        (FreezeRule("pattern", "^dense"), r"pattern '\^dense' matches no layer"),
    ],
)
def test_rule_naming_missing_layers_is_incompatible(rule: FreezeRule, message: str) -> None:
    with pytest.raises(Incompatible, match=message):
        _names(rule)


def test_freezing_base_leaves_only_the_head_trainable() -> None:
    built = _built()

    summary = Freezer(built).apply(FreezeRule("base", None))

    trainable = {v.path.split("/")[0] for v in built.model.trainable_weights}
    assert trainable == {"head_dense_1", "predictions"}
    assert summary.trainable_weights == 4
    assert summary.frozen_batch_norms == ["bn1", "bn2", "bn3"]


def test_first_n_freezes_exactly_the_first_layers() -> None:
    built = _built()

    Freezer(built).apply(FreezeRule("first_n", 6))

    trainable = {layer.name for layer in built.model.layers if layer.trainable_weights}
    assert trainable == {"bn2", "conv3", "bn3", "head_dense_1", "predictions"}


def test_rule_leaving_nothing_to_train_is_incompatible() -> None:
    with pytest.raises(Incompatible, match=r'freeze "base" leaves no trainable weights'):
        Freezer(_built(head=False)).apply(FreezeRule("base", None))


def test_batch_norm_once_frozen_stays_frozen_when_neighbours_thaw() -> None:
    built = _built()
    freezer = Freezer(built)

    freezer.apply(FreezeRule("until", "relu1"), "schedule[0].freeze")
    summary = freezer.apply(FreezeRule("none", None), "schedule[1].freeze")

    layer = built.model.get_layer
    assert layer("conv1").trainable and layer("bn2").trainable and layer("bn3").trainable
    assert not layer("bn1").trainable
    assert summary.frozen_layers == [] and summary.frozen_batch_norms == ["bn1"]


def test_batch_norm_frozen_in_the_model_file_counts_as_frozen() -> None:
    base = build_tiny_cnn(num_classes=3)
    base.get_layer("bn3").trainable = False
    built = build_model(
        base,
        image_shape=(32, 32, 3),
        preprocessing="none",
        head=None,
        num_classes=3,
        label_mode="categorical",
    )

    Freezer(built).apply(FreezeRule("none", None))

    assert not base.get_layer("bn3").trainable
    assert all(base.get_layer(n).trainable for n in ("conv1", "bn1", "bn2", "predictions"))


def test_batch_norm_inside_a_nested_model_is_found() -> None:
    inner = build_tiny_cnn(num_classes=3, name="inner")
    inputs = keras.Input((32, 32, 3), name="outer_input")
    outer = keras.Model(inputs, inner(inputs), name="outer")
    built = build_model(
        outer,
        image_shape=(32, 32, 3),
        preprocessing="none",
        head=head_settings(cut_at=-1),
        num_classes=3,
        label_mode="categorical",
    )
    freezer = Freezer(built)

    freezer.apply(FreezeRule("base", None))
    freezer.apply(FreezeRule("none", None))

    assert inner.get_layer("conv1").trainable
    assert not any(inner.get_layer(n).trainable for n in ("bn1", "bn2", "bn3"))


def test_rewind_leaves_the_model_as_built_for_the_first_phase_again() -> None:
    inner = build_tiny_cnn(num_classes=3, name="inner")
    inner.get_layer("bn3").trainable = False  # frozen in the file: stays frozen
    inputs = keras.Input((32, 32, 3), name="outer_input")
    built = build_model(
        keras.Model(inputs, inner(inputs), name="outer"),
        image_shape=(32, 32, 3),
        preprocessing="none",
        head=head_settings(cut_at=-1),
        num_classes=3,
        label_mode="categorical",
    )
    as_built = {layer.name: layer.trainable for layer in inner.layers}
    freezer = Freezer(built)
    first = freezer.apply(FreezeRule("none", None))
    freezer.apply(FreezeRule("base", None))  # freezes bn1 and bn2 for every later phase

    freezer.rewind()

    assert {layer.name: layer.trainable for layer in inner.layers} == as_built
    assert freezer.apply(FreezeRule("none", None)) == first
    assert first.frozen_batch_norms == ["inner/bn3"]  # named inside its nested model
