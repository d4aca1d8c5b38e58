"""Freeze rules, applied phase after phase, and BatchNormalization kept in inference mode.

Rules address the base model's own layers (``base.layers``, the list Keras gives, which starts
with the InputLayer for functional models; a nested model's layers count in its place, see
service.trainer.nesting); the new head always trains. Layers are named by their qualified names
in what the rules report.

In Keras 3 a BatchNormalization layer with ``trainable = False`` runs in inference mode even in
``fit``: its moving statistics and its gamma/beta stay as they are. Once a BatchNormalization layer
has been frozen (by the model file or by any phase) it stays frozen for the rest of the job, also
when a later phase unfreezes its neighbours: as in Keras's transfer-learning guide, re-enabling its
statistics after the base has adapted to them tends to wreck what was learned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from service.contract.plan import FreezeRule
from service.trainer.errors import Incompatible
from service.trainer.model_surgery import BuiltModel, similar_names_hint
from service.trainer.nesting import BaseLayers
from service.trainer.preprocessing import is_fixed_preprocessing


@dataclass
class FreezeSummary:
    """What one application of a rule left trainable.

    Attributes:
        frozen_layers: Names of the base layers the rule froze (in base order).
        frozen_batch_norms: Names of every BatchNormalization layer now frozen.
        trainable_weights: Trainable weight tensors of the whole model.
        trainable_params: Trainable scalars of the whole model.
        non_trainable_params: Frozen scalars of the whole model.
    """

    frozen_layers: list[str] = field(default_factory=list)
    frozen_batch_norms: list[str] = field(default_factory=list)
    trainable_weights: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0


def select_frozen(
    rule: FreezeRule,
    base_layers: BaseLayers | Sequence[keras.layers.Layer],
    field_name: str = "freeze",
) -> list[keras.layers.Layer]:
    """The base layers a rule freezes.

    ``none``: none. ``base``: all. ``first_n``: the first N of the base's layers. ``until``: the
    named layer (or nested model) and all before it. ``pattern``: those whose plain or qualified
    name matches the regex (``re.search``).

    Args:
        rule: The rule.
        base_layers: The base's layers (BaseLayers.of(base), or ``base.layers`` of a flat base).
        field_name: The spec field, for messages (``freeze``, ``schedule[1].freeze``).

    Raises:
        Incompatible: first_n exceeds the layer count, the until layer does not exist, or the
            pattern matches no layer.
    """
    flat = base_layers if isinstance(base_layers, BaseLayers) else _flat(base_layers)
    layers = list(flat.layers)
    if rule.kind == "none":
        return []
    if rule.kind == "base":
        return layers
    if rule.kind == "first_n":
        assert isinstance(rule.value, int)
        if rule.value > len(layers):
            raise Incompatible(
                f"{field_name}.first_n is {rule.value} but the base model has only {len(layers)} "
                f'layers; use at most {len(layers)}, or "base" to freeze all of it.'
            )
        return layers[: rule.value]
    if rule.kind == "until":
        assert isinstance(rule.value, str)
        try:
            found = flat.find(rule.value)
        except LookupError as exc:
            raise Incompatible(f"{field_name}.until: {exc}") from exc
        if found is None:
            raise Incompatible(
                f"{field_name}.until: the base model has no layer named {rule.value!r}. "
                f"{similar_names_hint(rule.value, flat.names())}"
            )
        return layers[: found[0] + 1]
    if rule.kind == "pattern":
        assert isinstance(rule.value, str)
        pattern = re.compile(rule.value)
        matched = [
            layer
            for layer, path in zip(layers, flat.paths, strict=True)
            if pattern.search(layer.name) or pattern.search(path)
        ]
        if not matched:
            raise Incompatible(
                f"{field_name}.pattern {rule.value!r} matches no layer of the base model. "
                f"{similar_names_hint(rule.value, flat.names())}"
            )
        return matched
    raise ValueError(f"Unknown freeze rule kind. Received: rule={rule!r}")


def _flat(layers: Sequence[keras.layers.Layer]) -> BaseLayers:
    """A flat base's layers as BaseLayers (no nested model among them)."""
    return BaseLayers(tuple(layers), tuple(layer.name for layer in layers), {}, {})


class Freezer:
    """Applies freeze rules to a built model, phase after phase.

    Args:
        built: The model to train and its base.
    """

    def __init__(self, built: BuiltModel) -> None:
        self.built = built
        self._flat = built.layers
        self._base_layers = list(self._flat.layers)
        # BatchNormalization frozen in the model file counts as frozen already.
        self._frozen_bn: dict[int, keras.layers.BatchNormalization] = {
            id(bn): bn for bn in _batch_norms(self._base_layers) if not bn.trainable
        }
        # The fixed preprocessing an earlier job built in (frozen there) never trains.
        self._fixed = {
            id(layer)
            for layer in self._base_layers
            if is_fixed_preprocessing(layer) and not layer.trainable
        }
        # Outer layers before their sublayers: setting a nested model's flag sets theirs.
        self._built_flags = [(layer, layer.trainable) for layer in _walk(self._base_layers)]
        self._built_frozen_bn = dict(self._frozen_bn)

    def rewind(self) -> None:
        """Undoes every rule applied: the flags as the model was built, for a first phase again."""
        for layer, trainable in self._built_flags:
            layer.trainable = trainable
        self._frozen_bn = dict(self._built_frozen_bn)

    def apply(self, rule: FreezeRule, field_name: str = "freeze") -> FreezeSummary:
        """Makes exactly the rule's layers (and every BatchNormalization once frozen) frozen.

        Callers must compile the model again afterwards.

        Raises:
            Incompatible: The rule names no layer (see select_frozen), or leaves nothing to train.
        """
        frozen = select_frozen(rule, self._flat, field_name)
        frozen_ids = {id(layer) for layer in frozen}
        # Setting a nested model's flag sets all its sublayers, so set all flags first and
        # re-freeze BatchNormalization after.
        for layer in self._base_layers:
            layer.trainable = id(layer) not in frozen_ids and id(layer) not in self._fixed
        for layer in self.built.head_layers:
            layer.trainable = True
        for bn in _batch_norms(frozen):
            self._frozen_bn[id(bn)] = bn
        for bn in self._frozen_bn.values():
            bn.trainable = False

        model = self.built.model
        summary = FreezeSummary(
            frozen_layers=[self._flat.path(layer) for layer in frozen],
            frozen_batch_norms=[
                self._flat.path(bn) for bn in _batch_norms(model.layers) if not bn.trainable
            ],
            trainable_weights=len(model.trainable_weights),
            trainable_params=_count(model.trainable_weights),
            non_trainable_params=_count(model.non_trainable_weights),
        )
        if summary.trainable_weights == 0:
            raise Incompatible(
                f"{field_name} {rule.describe()} leaves no trainable weights"
                f"{'' if self.built.head_layers else ' (there is no new head)'}. "
                "Freeze fewer layers, or add a head."
            )
        return summary


def _batch_norms(layers: Sequence[keras.layers.Layer]) -> Iterator[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer among ``layers`` and inside nested models, once each."""
    for layer in _walk(layers):
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def _walk(layers: Sequence[keras.layers.Layer]) -> Iterator[keras.layers.Layer]:
    """``layers`` and the layers nested in them, each once, every layer before its sublayers."""
    seen: set[int] = set()
    stack = list(reversed(layers))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(reversed(getattr(layer, "layers", None) or []))


def _count(weights: Sequence[keras.Variable]) -> int:
    return int(sum(np.prod(w.shape) for w in weights))
