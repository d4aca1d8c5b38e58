"""A job's training: the shared steps (pipeline.prepare), then fit the phases and export."""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import tensorflow as tf

from service.contract.messages import Info, PhaseStarted
from service.contract.plan import TrainingPlan
from service.contract.request import TrainingOutcome, TrainingRequest
from service.trainer.callbacks import tensorboard_callback
from service.trainer.checkpointing import load_resume_state, restore_weights
from service.trainer.data import ImageDatasets, image_datasets
from service.trainer.distribution import (
    Distribution,
    check_first_batches,
    choose_distribution,
)
from service.trainer.evaluation import Champion, final_evaluation, load_champion, read_test
from service.trainer.export import export_model
from service.trainer.features import FeatureCache
from service.trainer.fitting import FitResult, fit_phases
from service.trainer.loading import LoadedModel
from service.trainer.model_surgery import BuiltModel
from service.trainer.pipeline import Prepared, Problems, prepare
from service.trainer.reporting import Report
from service.trainer.sources import Examples


def train(request: TrainingRequest, report: Report) -> TrainingOutcome:
    """Fine-tunes the request's base model on its data and exports the result.

    Args:
        request: The spec and the local paths the worker staged.
        report: Receives the progress messages (PhaseStarted, Info, CheckpointWritten,
            EpochEnded), in order.

    Returns:
        What was trained and written; the files are under ``request.output_dir``.

    Raises:
        TrainerError: At the first problem, a subclass whose message says what to change
            (invalid_model, invalid_dataset, incompatible, out_of_memory).
    """
    timings: dict[str, float] = {}
    # The model, its optimizer and its metrics are made under the job's strategy; the export is
    # outside it, so the files hold plain variables (distribution.py).
    distribution = choose_distribution(TrainingPlan.from_spec(request.spec).resources.gpus)
    with distribution.scope():
        trained = _prepare_and_fit(request, report, timings, distribution)
    found, data, fitted = trained.found, trained.data, trained.fitted
    loaded, built, image_shape = found.loaded, found.built, found.image_shape
    assert loaded is not None and built is not None and image_shape is not None
    assert found.policy is not None

    started = time.monotonic()
    report(PhaseStarted("exporting"))
    exported = export_model(built.model, request.output_dir)
    timings["exporting"] = _since(started)

    started = time.monotonic()
    evaluation, comparison, notes = final_evaluation(
        built.model,
        test=trained.test,
        validation=found.validation,
        image_shape=image_shape,
        batch_size=found.plan.training.batch_size,
        champion=trained.champion,
    )
    for note in notes:
        report(note)
    timings["evaluating"] = _since(started)

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
        },
        timings=timings,
        restored_epoch=fitted.restored_epoch,
        phases=fitted.phases,
        base_model={
            **_base_model(loaded),
            **({"architecture": loaded.architecture} if loaded.architecture else {}),
        },
        precision=found.policy,
        evaluation=evaluation,
        comparison=comparison,
    )


@dataclass(frozen=True)
class _Trained:
    """What the steps up to the export produced."""

    found: Prepared
    data: ImageDatasets
    fitted: FitResult
    test: Examples | None
    champion: Champion | None


def _prepare_and_fit(
    request: TrainingRequest,
    report: Report,
    timings: dict[str, float],
    distribution: Distribution,
) -> _Trained:
    """Prepares the model and data, resumes where a checkpoint is, and fits every phase."""
    started = time.monotonic()
    report(PhaseStarted("loading"))
    problems = Problems(collect=False)
    found = prepare(request, problems)
    plan, loaded, built, examples = found.plan, found.loaded, found.built, found.train
    image_shape, policy = found.image_shape, found.policy
    # Problems raise in train mode: every step has its result here.
    assert loaded is not None and built is not None and examples is not None
    assert image_shape is not None and policy is not None
    check_first_batches(
        distribution,
        plan.training.batch_size,
        sum(examples.counts().values()),
        None if found.validation is None else sum(found.validation.counts().values()),
    )
    strategy = distribution.info(plan.training.batch_size)
    for message in (
        *_described(found, loaded, built, examples, image_shape),
        *problems.notes,
        *([] if strategy is None else [strategy]),
    ):
        report(message)
    # Listed and checked now, decoded only after training (evaluation.py).
    test = read_test(request, examples)
    champion = None
    if request.champion is not None:
        champion = load_champion(request.champion, examples.class_names, image_shape[2])
    data = image_datasets(
        examples,
        found.validation,
        image_shape=image_shape,
        batch_size=plan.training.batch_size,
        label_mode=found.label_mode,
        seed=found.seed,
        augmentation=plan.training.augmentation,
        cache_mb=request.data_cache_mb,
    )
    timings["loading"] = _since(started)

    started = time.monotonic()
    resume = None
    if request.resume_from:
        resume = load_resume_state(request.resume_from)
        restore_weights(built.model, resume)
    report(PhaseStarted("training"))
    fitted = fit_phases(
        built,
        data,
        plan,
        report,
        checkpoint_dir=request.checkpoint_dir,
        resume=resume,
        class_weight=found.class_weight,
        extra_callbacks=[tensorboard_callback(request.output_dir)],
        feature_cache=FeatureCache(
            data, request.scratch_dir, enabled=plan.training.feature_cache == "auto"
        ),
    )
    timings["training"] = _since(started)
    return _Trained(found, data, fitted, test, champion)


def _described(
    found: Prepared,
    loaded: LoadedModel,
    built: BuiltModel,
    train: Examples,
    image_shape: tuple[int, int, int],
) -> list[Info]:
    """The job's events about what was loaded, found and built, before training starts."""
    messages = []
    if loaded.architecture is not None:
        named = loaded.architecture
        messages.append(
            Info(
                f"Built {named['built']} and loaded {named['weights_loaded']} weight tensors "
                f"of {named['layers_loaded']} layers from the weights file (sha256 "
                f"{named['weights_sha256']}, {named['weights_layout']} layout).",
                {"architecture": named},
            )
        )
    if loaded.ignored:
        messages.append(
            Info(
                "The SavedModel folder was rebuilt from its Keras configuration and variables; "
                "ignored, never run: " + "; ".join(loaded.ignored) + ".",
                {"ignored": list(loaded.ignored)},
            )
        )
    counts = train.counts()
    validation_counts = {} if found.validation is None else found.validation.counts()
    weights = found.class_weight
    messages.append(
        Info(
            f"Found {len(train.class_names)} classes: {sum(counts.values())} training and "
            f"{sum(validation_counts.values())} validation images.",
            {
                "class_names": train.class_names,
                "train_counts": counts,
                "validation_counts": validation_counts,
                "label_mode": found.label_mode,
                "source": train.source,
                "class_weight": None
                if weights is None
                else {train.class_names[i]: w for i, w in weights.items()},
            },
        )
    )
    messages.append(
        Info(
            f"Model input {list(image_shape)} raw pixels; "
            + (
                f"new head on the output of {built.cut_layer!r}"
                if built.cut_layer
                else "the base model's own output layer"
            )
            + f" ({built.output_units} output units).",
            {
                "input_shape": list(image_shape),
                "base_layers": len(built.layers.layers),
                "cut_layer": built.cut_layer,
                "feature_shape": list(built.feature_shape),
                "head_layers": [layer.name for layer in built.head_layers],
                "output_units": built.output_units,
                "seed": found.seed,
                "base_model": _base_model(loaded),
                "precision": found.policy,
            },
        )
    )
    return messages


def _base_model(loaded: LoadedModel) -> dict[str, str]:
    return {"format": loaded.file_format, "written_by": loaded.written_by, "reader": loaded.reader}


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
