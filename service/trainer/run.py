"""One training run from request to exported model: load, data, build, fit phases, export."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from service.contract.request import TrainingOutcome, TrainingRequest
from service.trainer.architectures import open_planned_base
from service.trainer.callbacks import tensorboard_callback
from service.trainer.checkpointing import load_resume_state, restore_weights
from service.trainer.compiling import check_loss_and_metrics
from service.trainer.data import class_weights, label_mode_for_loss, load_image_datasets
from service.trainer.export import export_model
from service.trainer.fitting import fit_phases
from service.trainer.model_surgery import build_model, resolve_image_shape
from service.trainer.plan import TrainingPlan
from service.trainer.precision import apply_policy, resolve_policy

Report = Callable[[dict[str, Any]], None]


def train(request: TrainingRequest, report: Report) -> TrainingOutcome:
    """Fine-tunes the request's base model on its data and exports the result.

    Args:
        request: The spec and the local paths the worker staged.
        report: Receives plain-dict messages: ``phase``, ``info`` and ``epoch`` (see child.py).

    Returns:
        What was trained and written; the files are under ``request.output_dir``.

    Raises:
        TrainerError: A subclass whose message says what to change (invalid_model,
            invalid_dataset, incompatible, out_of_memory).
    """
    plan = TrainingPlan.from_spec(request.spec)
    timings: dict[str, float] = {}

    started = time.monotonic()
    report({"type": "phase", "phase": "loading"})
    seed = seed_everything(plan.training.seed)
    check_loss_and_metrics(plan.training.loss, plan.training.metrics)
    policy = resolve_policy(plan.training.mixed_precision)
    loaded = open_planned_base(plan, request.base_model_path)
    base = loaded.model
    if loaded.architecture is not None:
        named = loaded.architecture
        report(
            _info(
                f"Built {named['built']} and loaded {named['weights_loaded']} weight tensors "
                f"of {named['layers_loaded']} layers from the weights file (sha256 "
                f"{named['weights_sha256']}, {named['weights_layout']} layout).",
                architecture=named,
            )
        )
    image_shape = resolve_image_shape(base, plan.data.image_size)
    label_mode = label_mode_for_loss(plan.training.loss)
    data = load_image_datasets(
        request.train_path,
        request.validation_path,
        image_shape=image_shape,
        batch_size=plan.training.batch_size,
        label_mode=label_mode,
        validation_split=plan.data.validation_split,
        seed=seed,
        data_format=request.train_format,
        validation_format=request.validation_format,
        augmentation=plan.training.augmentation,
        cache_mb=request.data_cache_mb,
    )
    weights = class_weights(plan.training.class_weight, data.class_names, data.train_counts)
    report(
        _info(
            f"Found {len(data.class_names)} classes: {sum(data.train_counts.values())} "
            f"training and {sum(data.validation_counts.values())} validation images.",
            class_names=data.class_names,
            train_counts=data.train_counts,
            validation_counts=data.validation_counts,
            label_mode=label_mode,
            source=data.source,
            class_weight=None
            if weights is None
            else {data.class_names[i]: w for i, w in weights.items()},
        )
    )
    base = apply_policy(base, policy)
    built = build_model(
        base,
        image_shape=image_shape,
        preprocessing=plan.data.preprocessing,
        head=plan.head,
        num_classes=len(data.class_names),
        label_mode=label_mode,
    )
    report(
        _info(
            f"Model input {list(image_shape)} raw pixels; "
            + (
                f"new head on the output of {built.cut_layer!r}"
                if built.cut_layer
                else "the base model's own output layer"
            )
            + f" ({built.output_units} output units).",
            input_shape=list(image_shape),
            base_layers=len(base.layers),
            cut_layer=built.cut_layer,
            feature_shape=list(built.feature_shape),
            head_layers=[layer.name for layer in built.head_layers],
            output_units=built.output_units,
            seed=seed,
            base_model={
                "format": loaded.file_format,
                "written_by": loaded.written_by,
                "reader": loaded.reader,
            },
            precision=policy,
        )
    )
    timings["loading"] = _since(started)

    started = time.monotonic()
    resume = None
    if request.resume_from:
        resume = load_resume_state(request.resume_from)
        restore_weights(built.model, resume)
    report({"type": "phase", "phase": "training"})
    fitted = fit_phases(
        built,
        data,
        plan,
        report,
        checkpoint_dir=request.checkpoint_dir,
        resume=resume,
        class_weight=weights,
        extra_callbacks=[tensorboard_callback(request.output_dir)],
    )
    timings["training"] = _since(started)

    started = time.monotonic()
    report({"type": "phase", "phase": "exporting"})
    exported = export_model(built.model, request.output_dir)
    timings["exporting"] = _since(started)

    return TrainingOutcome(
        metrics=fitted.metrics,
        history=fitted.history,
        class_names=data.class_names,
        saved_model_dir=exported.saved_model_dir,
        keras_file=exported.keras_file,
        input_shape=list(image_shape),
        trainable_weights=fitted.trainable_weights,
        versions={
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            **({"tf_keras": _tf_keras_version()} if loaded.reader == "tf_keras" else {}),
        },
        timings=timings,
        restored_epoch=fitted.restored_epoch,
        phases=fitted.phases,
        base_model={
            "format": loaded.file_format,
            "written_by": loaded.written_by,
            "reader": loaded.reader,
            **({"architecture": loaded.architecture} if loaded.architecture else {}),
        },
        precision=policy,
    )


def seed_everything(seed: int | None) -> int:
    """Seeds Python, NumPy and TensorFlow and makes ops deterministic, where a seed is given.

    Returns:
        The seed for the data split and shuffling: ``seed``, or a fresh random one.
    """
    if seed is None:
        return random.SystemRandom().randrange(2**31)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return seed


def _info(message: str, **data: Any) -> dict[str, Any]:
    return {"type": "info", "message": message, "data": data}


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _tf_keras_version() -> str:
    import tf_keras

    return str(tf_keras.__version__)
