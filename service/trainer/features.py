"""The feature cache: a phase's frozen prefix computed once, and the rest trained on its outputs.

With the base frozen, ``fit`` runs the same frozen layers on the same images every epoch and
gets the same numbers: frozen BatchNormalization runs in inference mode (freezing.py) and the
other layers of the prefix have no training behaviour. So each phase looks for its frozen
prefix (``find_frozen_prefix``): the layers that hold nothing trainable, whose inputs all come
from the prefix (the model's input first), and that compute the same in training as in
inference. A Dropout, noise or random layer ends it (Keras runs those in training mode also
when frozen), and so does any layer with trainable weights. The trainer flattens nested
bases before this (trainer/nesting.py), so the prefix is found among their own layers; a
nested model still left whole counts as one layer: in the prefix where all of it is. The
prefix's outputs that later layers read are its frontier, one tensor or several in a model
with branches.

Where the prefix holds at least ``MIN_PREFIX_SHARE`` of the model's estimated compute and
nothing random changes the images (augmentation), ``FeatureCache.prepare`` computes the
frontier once for the training and validation images, in inference mode (the images fed as
uint8 and converted on the device), and returns a model from the frontier to the outputs that
shares the layer objects of the whole model: what it trains are the whole model's weights.
The features are read back through the training pipeline's own shuffle (data.Split.positions),
so every epoch sees the examples in the order the images would have come in: the same
weights, within float rounding, as without the cache.

Features that fit what the data cache budget leaves are kept in memory, others in a ``.npy``
file under the scratch folder, read batch by batch (a memory map).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from service.contract.messages import Info
from service.trainer.data import ImageDatasets, Split

#: The least share of the model's estimated compute a prefix must hold to be cached.
MIN_PREFIX_SHARE = 0.5
#: Pixels (images x height x width) per batch of the prefix's one inference pass: with no
#: gradients to keep, larger batches than training's run faster (MobileNetV2 at 96x96 on this
#: project's CPU: 1.32 times as fast in batches of 128 as in batches of 32; bench/RESULTS.md).
INFERENCE_BATCH_PIXELS = 128 * 96 * 96
#: The most images per batch of that pass, however small the images.
MAX_INFERENCE_BATCH = 256


@dataclass(frozen=True)
class FrozenPrefix:
    """Where a model's frozen prefix ends.

    Attributes:
        frontier: The prefix's tensors that later layers read (tensors of the model's graph).
        cut_layers: Names of the layers whose outputs the frontier is, in frontier order.
        layers: How many layers the prefix holds (the input layer not counted).
        share: The prefix's share of the model's estimated compute (0-1).
    """

    frontier: tuple[keras.KerasTensor, ...]
    cut_layers: tuple[str, ...]
    layers: int
    share: float


def find_frozen_prefix(model: keras.Model) -> FrozenPrefix | None:
    """The frozen prefix of a functional model as it is frozen now; None where it is empty.

    None also where a model output is computed by the prefix alone (nothing to train there).
    """
    nodes = _nodes(model)
    known = {id(tensor) for tensor in model.inputs}
    in_prefix: list[Any] = []
    rest: list[Any] = []
    total = prefix_cost = 0.0
    for node in nodes:
        layer = node.operation
        if isinstance(layer, keras.layers.InputLayer):
            continue
        cost = _cost(layer, node.output_tensors)
        total += cost
        if all(id(t) in known for t in node.input_tensors) and _computes_the_same(layer):
            known.update(id(t) for t in node.output_tensors)
            in_prefix.append(node)
            prefix_cost += cost
        else:
            rest.append(node)
    inputs = {id(tensor) for tensor in model.inputs}
    if not in_prefix or any(id(t) in known for t in model.outputs):
        return None
    frontier: list[keras.KerasTensor] = []
    for node in rest:
        for tensor in node.input_tensors:
            if id(tensor) in known and all(tensor is not f for f in frontier):
                frontier.append(tensor)
    if any(id(tensor) in inputs for tensor in frontier):
        return None  # a trainable layer reads the images themselves
    return FrozenPrefix(
        frontier=tuple(frontier),
        cut_layers=tuple(t._keras_history.operation.name for t in frontier),
        layers=len(in_prefix),
        share=prefix_cost / total if total else 0.0,
    )


@dataclass
class CachedFeatures:
    """One split's features: an array per frontier tensor, and the labels, in position order."""

    arrays: list[np.ndarray]
    labels: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes of the features (the labels not counted)."""
        return int(sum(array.nbytes for array in self.arrays))


@dataclass
class CachedPhase:
    """What a phase trains on the cache: the model after the frontier, and its data.

    Attributes:
        model: From the frontier tensors to the outputs, sharing the whole model's layers.
        train: Batches of (features, labels), in the training images' order.
        validation: Batches of validation features, in order; None without validation.
        steps_per_execution: Batches per call of the training function: a whole epoch on one
            device (a small head's step is mostly Keras's per-call cost), 1 under a strategy
            of several replicas (Keras 3.15's multi-step loop fails there on TensorFlow:
            "You must feed a value for placeholder tensor").
    """

    model: keras.Model
    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    steps_per_execution: int = 1


class FeatureCache:
    """Computes each phase's frozen prefix once, where it pays (see the module's doc).

    Args:
        data: The image pipelines (their positions and unbatched examples are read).
        scratch_dir: Where features that do not fit in memory go; None: a temporary folder.
        enabled: ``training.feature_cache`` is ``auto``.
    """

    def __init__(self, data: ImageDatasets, scratch_dir: str | None, enabled: bool) -> None:
        self.data = data
        self.enabled = enabled
        self._scratch = scratch_dir
        self._made: Path | None = None
        self._budget = data.cache_left_bytes
        self._said_why_not = False

    def prepare(
        self, model: keras.Model, phase_index: int
    ) -> tuple[CachedPhase | None, Info | None]:
        """The cached form of the phase about to run (None: none), and an event to show.

        Call after the phase's freezing. The features of an earlier phase are dropped first.
        """
        self.close()
        if not self.enabled or self.data.splits is None:
            return None, None
        prefix = find_frozen_prefix(model)
        if prefix is None or prefix.share < MIN_PREFIX_SHARE:
            return None, None
        if self.data.augmented:
            if self._said_why_not:
                return None, None
            self._said_why_not = True
            return None, Info(
                f"Feature cache, phase {phase_index + 1}: the frozen layers up to "
                f"{_names(prefix.cut_layers)} "
                f"({prefix.share:.0%} of the model's compute) are run every epoch: "
                "training.augmentation changes the images each epoch, so their outputs are not "
                "cached.",
                {
                    "feature_cache": {
                        "phase_index": phase_index,
                        "state": "off",
                        "reason": "augmentation",
                    }
                },
            )
        started = time.monotonic()
        train_split, validation_split = self.data.splits
        run = _prefix_function(model, prefix)
        splits = [train_split, *([] if validation_split is None else [validation_split])]
        places = []
        features = []
        for name, split in zip(("train", "validation"), splits, strict=False):
            nbytes = split.count * _bytes_per_example(prefix)
            on_disk = nbytes > self._budget
            if not on_disk:
                self._budget -= nbytes
            places.append("disk" if on_disk else "memory")
            features.append(self._compute(run, prefix, split, name, on_disk))
        seconds = round(time.monotonic() - started, 3)
        trainer = keras.Model(list(prefix.frontier), model.outputs, name=f"{model.name}_after_cut")
        batch_size = self.data.batch_size
        train = _feature_batches(train_split.positions, features[0])
        validation = (
            None
            if validation_split is None
            else _feature_batches(
                tf.data.Dataset.range(validation_split.count).batch(batch_size), features[1]
            )
        )
        examples = [split.count for split in splits]
        sizes = [f.nbytes for f in features]
        notice = Info(
            f"Feature cache, phase {phase_index + 1}: the frozen layers up to "
            f"{_names(prefix.cut_layers)} "
            f"({prefix.layers} layers, {prefix.share:.0%} of the model's compute) ran once in "
            f"{seconds:g} s; their outputs for {' and '.join(map(str, examples))} "
            f"{'training and validation' if len(examples) > 1 else 'training'} images "
            f"({_megabytes(sum(sizes))}, in {' and '.join(dict.fromkeys(places))}) train the "
            "rest of the model.",
            {
                "feature_cache": {
                    "phase_index": phase_index,
                    "state": "on",
                    "cut_layers": list(prefix.cut_layers),
                    "prefix_layers": prefix.layers,
                    "prefix_share": round(prefix.share, 4),
                    "examples": dict(zip(("train", "validation"), examples, strict=False)),
                    "bytes": dict(zip(("train", "validation"), sizes, strict=False)),
                    "kept_in": dict(zip(("train", "validation"), places, strict=False)),
                    "seconds": seconds,
                }
            },
        )
        one_replica = tf.distribute.get_strategy().num_replicas_in_sync == 1
        steps = math.ceil(train_split.count / batch_size) if one_replica else 1
        cached = CachedPhase(trainer, train.prefetch(tf.data.AUTOTUNE), validation, steps)
        return cached, notice

    def close(self) -> None:
        """Frees the features: the memory held and the files written."""
        self._budget = self.data.cache_left_bytes
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
            self._made = None

    def _compute(
        self,
        run: Callable[..., list[tf.Tensor]],
        prefix: FrozenPrefix,
        split: Split,
        name: str,
        on_disk: bool,
    ) -> CachedFeatures:
        shapes = [(split.count, *tuple(t.shape[1:])) for t in prefix.frontier]
        dtypes = [np.dtype(t.dtype) for t in prefix.frontier]
        if on_disk:
            folder = self._folder()
            arrays: list[np.ndarray] = [
                np.lib.format.open_memmap(
                    folder / f"{name}-{i}.npy", mode="w+", dtype=dtype, shape=shape
                )
                for i, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=True))
            ]
        else:
            arrays = [np.empty(shape, dtype) for shape, dtype in zip(shapes, dtypes, strict=True)]
        labels: list[np.ndarray] = []
        start = 0
        image_shape = tuple(split.examples.element_spec[0].shape)
        batch_size = inference_batch_size(image_shape, self.data.batch_size)
        for images, batch_labels in split.examples.batch(batch_size).prefetch(2):
            outputs = run(images)
            end = start + int(batch_labels.shape[0])
            for array, output in zip(arrays, outputs, strict=True):
                array[start:end] = np.asarray(output)
            labels.append(np.asarray(batch_labels))
            start = end
        for array in arrays:
            if isinstance(array, np.memmap):
                array.flush()
        return CachedFeatures(arrays, np.concatenate(labels))

    def _folder(self) -> Path:
        if self._made is None:
            if self._scratch is not None:
                Path(self._scratch).mkdir(parents=True, exist_ok=True)
            self._made = Path(tempfile.mkdtemp(prefix="features-", dir=self._scratch))
        return self._made


def inference_batch_size(image_shape: Sequence[int | None], training_batch_size: int) -> int:
    """Images per batch of the prefix's inference pass (see INFERENCE_BATCH_PIXELS).

    Never fewer than training's batch, which fits with its gradients; where the image size is
    not known, training's.
    """
    height, width = image_shape[0], image_shape[1]
    if not height or not width:
        return training_batch_size
    by_pixels = min(MAX_INFERENCE_BATCH, INFERENCE_BATCH_PIXELS // (height * width))
    return max(training_batch_size, by_pixels)


def _prefix_function(model: keras.Model, prefix: FrozenPrefix) -> Callable[..., list[tf.Tensor]]:
    """The prefix in inference mode, from uint8 images (cast to float on the device)."""
    (image,) = model.inputs
    prefix_model = keras.Model(model.inputs, list(prefix.frontier))
    # Traced once for any batch size (the last batch is smaller): a trace costs about a batch.
    signature = [tf.TensorSpec((None, *image.shape[1:]), tf.uint8)]

    @tf.function(input_signature=signature)  # type: ignore[untyped-decorator]
    def run(images: tf.Tensor) -> list[tf.Tensor]:
        outputs = prefix_model(tf.cast(images, image.dtype), training=False)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    return run


def _feature_batches(positions: tf.data.Dataset, features: CachedFeatures) -> tf.data.Dataset:
    """Batches of (features, labels) gathered at each batch of positions.

    Features in memory are gathered by TensorFlow (no Python per batch); features on disk are
    read from their memory maps, batch by batch.
    """
    arrays, labels = features.arrays, features.labels
    if not any(isinstance(array, np.memmap) for array in arrays):
        held = [tf.constant(array) for array in [*arrays, labels]]

        def take(batch: tf.Tensor) -> tuple[Any, tf.Tensor]:
            found = [tf.gather(tensor, batch) for tensor in held]
            return (found[0] if len(arrays) == 1 else tuple(found[:-1])), found[-1]

        return positions.map(take)
    dtypes = [tf.as_dtype(a.dtype) for a in arrays] + [tf.as_dtype(labels.dtype)]

    def gather(batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(a[batch]) for a in arrays] + [labels[batch]]

    def read(batch: tf.Tensor) -> tuple[Any, tf.Tensor]:
        found = tf.numpy_function(gather, [batch], dtypes, stateful=False)
        for tensor, array in zip(found, [*arrays, labels], strict=True):
            tensor.set_shape((None, *array.shape[1:]))
        x = found[0] if len(arrays) == 1 else tuple(found[:-1])
        return x, found[-1]

    return positions.map(read)


def _nodes(model: keras.Model) -> list[Any]:
    """The functional graph's nodes, every node after those it reads."""
    graph = model if hasattr(model, "_nodes_by_depth") else getattr(model, "_functional", None)
    if graph is None:
        return []
    by_depth = graph._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def _computes_the_same(layer: keras.layers.Layer) -> bool:
    """Whether the layer is frozen and computes the same in training as in inference."""
    if layer.trainable_weights:
        return False
    if isinstance(layer, keras.layers.BatchNormalization):
        return not layer.trainable  # frozen: inference mode in fit too
    if isinstance(layer, keras.Model):
        return all(
            _computes_the_same(inner)
            for inner in layer.layers
            if not isinstance(inner, keras.layers.InputLayer)
        )
    return not getattr(layer, "_call_has_training_arg", True)


def _cost(layer: keras.layers.Layer, outputs: Sequence[keras.KerasTensor]) -> float:
    """A layer's estimated compute per example: weights times output positions, plus outputs.

    That is the multiply-adds of a convolution or a dense layer; a nested model sums its own.
    """
    if isinstance(layer, keras.Model):
        nested = _nodes(layer)
        if nested:
            return sum(
                _cost(node.operation, node.output_tensors)
                for node in nested
                if not isinstance(node.operation, keras.layers.InputLayer)
            )
    weights = sum(math.prod(w.shape) for w in layer.weights)
    total = 0.0
    for tensor in outputs:
        shape = [d or 1 for d in tensor.shape[1:]]
        positions = math.prod(shape[:-1]) if len(shape) > 1 else 1
        total += weights * positions + math.prod(shape)
    return total


def _bytes_per_example(prefix: FrozenPrefix) -> int:
    return sum(
        math.prod(d or 1 for d in t.shape[1:]) * np.dtype(t.dtype).itemsize for t in prefix.frontier
    )


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MB"
