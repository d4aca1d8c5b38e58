"""Running the phases: freeze, recompile, fit, with early stopping and continuous epoch counts."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import keras

from service.contract.faults import is_disk_full
from service.contract.messages import Info
from service.contract.plan import EarlyStoppingSettings, Phase, TrainingPlan, TrainingSettings
from service.trainer.callbacks import ProgressCallback
from service.trainer.checkpointing import CheckpointCallback, ResumeState, restore_optimizer
from service.trainer.compiling import compile_alike, compile_model
from service.trainer.devices import training_device
from service.trainer.effective import effective_settings
from service.trainer.errors import Incompatible, InvalidDataset, OutOfMemory
from service.trainer.freezing import Freezer
from service.trainer.model_surgery import BuiltModel
from service.trainer.phases import PhaseSummary
from service.trainer.reporting import BackgroundReporter, Report
from service.trainer.schedules import phase_learning_rate


class TrainingData(Protocol):
    """What ``fit_phases`` reads of the data (data.ImageDatasets is one).

    ``train`` and ``validation`` are what ``model.fit`` takes: a tf.data pipeline of batches,
    or an in-memory ``(images, labels)`` pair of arrays, which ``fit`` batches and reshuffles
    itself (no TensorFlow needed, so the same code trains under the JAX backend).
    """

    @property
    def train(self) -> Any:
        """Batches of (images, labels), or an (images, labels) pair of arrays."""

    @property
    def validation(self) -> Any | None:
        """Like ``train``; None without validation."""


class CachedTraining(Protocol):
    """A phase trained on a frozen prefix's features (features.CachedPhase is one).

    ``model`` runs from the prefix's outputs to the model's outputs with the whole model's own
    layer objects; ``train`` and ``validation`` are batches of (features, labels);
    ``steps_per_execution`` the batches per call of the training function.
    """

    model: keras.Model
    train: Any
    validation: Any | None
    steps_per_execution: int


class PhaseCache(Protocol):
    """Decides per phase whether it trains on its frozen prefix's features (features.py)."""

    def prepare(
        self, model: keras.Model, phase_index: int
    ) -> tuple[CachedTraining | None, Info | None]:
        """The phase's cached form (None: train the whole model) and an event to show."""

    def close(self) -> None:
        """Frees the features of the last phase."""


@dataclass
class _Fed:
    """What one phase's ``fit`` reads (a TrainingData)."""

    train: Any
    validation: Any | None


@dataclass
class FitResult:
    """What the phases produced.

    Attributes:
        history: One entry per epoch run: ``{"epoch" (1-based, across phases), "phase", ...}``.
        metrics: The final metrics: of the last phase's restored best epoch, else its last epoch.
        trainable_weights: Trainable weight tensors in the last phase.
        restored_epoch: The epoch whose weights early stopping restored at the end, if any.
        phases: Per phase run: PhaseSummary.outcome.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    trainable_weights: int = 0
    restored_epoch: int | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)


def fit_phases(
    built: BuiltModel,
    data: TrainingData,
    plan: TrainingPlan,
    report: Report,
    checkpoint_dir: str | None = None,
    resume: ResumeState | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    class_weight: dict[int, float] | None = None,
    feature_cache: PhaseCache | None = None,
) -> FitResult:
    """Runs every phase of the plan on ``built.model``.

    Each phase applies its freeze rule, recompiles (fresh optimizer at the phase's learning rate,
    or its schedule), and fits from the epoch the previous phase ended at. A phase that early
    stopping ends goes on to the next phase; its best weights are restored first where so
    configured. ``extra_callbacks`` (TensorBoard) run in every phase.

    With ``checkpoint_dir`` a checkpoint is saved after every epoch. With ``resume`` (weights
    already restored) the phases before the checkpoint's only replay their freezing, and its
    phase continues after its last epoch with the optimizer's saved state (and its step, so the
    learning-rate schedule goes on where it was).

    With ``feature_cache`` a phase whose frozen prefix it caches trains the model after the
    prefix on the prefix's outputs: the same weights (they are the whole model's), the same
    optimizer, checkpoints of the whole model.

    Raises:
        Incompatible: A freeze rule does not fit the model, or early stopping names an unknown
            metric.
        InvalidDataset: An image could not be decoded.
        OutOfMemory: TensorFlow could not allocate memory.
    """
    # Reports and checkpoint writes run on one background thread, in order (reporting.py).
    reporter = BackgroundReporter(report)
    try:
        result = _fit_phases(
            built,
            data,
            plan,
            reporter,
            checkpoint_dir,
            resume,
            list(extra_callbacks),
            class_weight,
            feature_cache,
        )
    except BaseException:
        reporter.close(raise_errors=False)
        raise
    finally:
        if feature_cache is not None:
            feature_cache.close()
    reporter.close()
    return result


def _fit_phases(
    built: BuiltModel,
    data: TrainingData,
    plan: TrainingPlan,
    reporter: BackgroundReporter,
    checkpoint_dir: str | None,
    resume: ResumeState | None,
    extra_callbacks: list[keras.callbacks.Callback],
    class_weight: dict[int, float] | None,
    feature_cache: PhaseCache | None,
) -> FitResult:
    training = plan.training
    freezer = Freezer(built)
    result = FitResult()
    epochs_done = 0
    if resume is not None:
        result.history = list(resume.history)
        epochs_done = resume.epoch
    for position, phase in enumerate(plan.phases):
        started = time.monotonic()
        summary = PhaseSummary.freeze(freezer, phase, len(plan.phases))
        result.trainable_weights = summary.freezing.trainable_weights
        if resume is not None and phase.index < resume.phase_index:
            continue  # finished before the checkpoint: only its freezing is replayed
        reporter.report(summary.info())
        steps = steps_per_epoch(data, training.batch_size)
        compile_model(
            built.model,
            training,
            phase_learning_rate(phase.lr_schedule, phase.learning_rate, phase.epochs, steps),
        )
        phase_start, to_run = epochs_done, phase.epochs
        if resume is not None and phase.index == resume.phase_index:
            restore_optimizer(built.model, resume)
            phase_start = resume.phase_start_epoch
            to_run = phase_start + phase.epochs - epochs_done
            if not phase.lr_schedule.constant:
                continue_schedule(built.model.optimizer, epochs_done - phase_start, steps)
        if to_run <= 0:
            continue
        model, fed = _what_trains(built.model, data, phase, feature_cache, reporter, training)
        epochs_total = epochs_done + to_run + sum(p.epochs for p in plan.phases[position + 1 :])
        stopper = early_stopping(
            training.early_stopping, data.validation is not None, training.metrics
        )
        callbacks: list[keras.callbacks.Callback] = [
            ProgressCallback(reporter.report, phase.index, epochs_total, result.history),
            *extra_callbacks,
            *([] if stopper is None else [stopper]),
        ]
        if checkpoint_dir is not None:
            # Before ProgressCallback: the worker stores epoch k's checkpoint before its progress.
            callbacks.insert(
                0,
                CheckpointCallback(
                    checkpoint_dir,
                    phase.index,
                    phase_start,
                    result.history,
                    reporter.direct_report,
                    writer=reporter,
                    weights_of=built.model,
                ),
            )
        first = len(result.history)
        _fit(
            model,
            fed,
            epochs_done,
            to_run,
            phase,
            callbacks,
            training.batch_size,
            class_weight,
        )
        phase_history = result.history[first:]
        epochs_done += len(phase_history)
        result.metrics, result.restored_epoch = _final_metrics(phase_history, stopper)
        seconds = round(time.monotonic() - started, 3)
        settings = effective_settings(built, training, steps, stopper)
        result.phases.append(
            summary.outcome(len(phase_history), seconds, result.restored_epoch, settings)
        )
    if not result.metrics and result.history:  # resumed after the very last epoch
        result.metrics, _ = _final_metrics(result.history[-1:], None)
    return result


def _what_trains(
    model: keras.Model,
    data: TrainingData,
    phase: Phase,
    feature_cache: PhaseCache | None,
    reporter: BackgroundReporter,
    training: TrainingSettings,
) -> tuple[keras.Model, TrainingData]:
    """The model and data the phase fits: the cached form, the whole model on uint8 pixels
    cast on the device, or (arrays, or augmented pixels) the whole model as it is.

    Call after compiling ``model`` (and restoring its optimizer's state, when resuming).
    """
    cached: CachedTraining | None = None
    if feature_cache is not None:
        cached, notice = feature_cache.prepare(model, phase.index)
        if notice is not None:
            reporter.report(notice)
    if cached is not None:
        trains, fed = cached.model, _Fed(cached.train, cached.validation)
    elif getattr(data, "uint8_train", None) is not None and training_device() != "cpu":
        # A quarter of the bytes to copy to the accelerator. On a CPU nothing is copied, and
        # tf.data's cast overlaps the training step where the model's would add to it.
        trains = casting_on_device(model)
        fed = _Fed(data.uint8_train, getattr(data, "uint8_validation", None))  # type: ignore[attr-defined]
    else:
        return model, data
    compile_alike(trains, model, training, cached.steps_per_execution if cached else 1)
    if not model.optimizer.built:
        # The whole model's order of variables: checkpoints are the same either way.
        model.optimizer.build(model.trainable_variables)
    return trains, fed


class _ToFloat(keras.layers.Layer):  # type: ignore[misc]
    """uint8 pixels to float32, on the device the model runs on."""

    def call(self, images: Any) -> Any:
        return keras.ops.cast(images, "float32")


def casting_on_device(model: keras.Model) -> keras.Model:
    """``model`` behind a cast from uint8 pixels: what fit trains (never exported)."""
    (image,) = model.inputs
    pixels = keras.Input(shape=tuple(image.shape[1:]), dtype="uint8", name=f"{image.name}_uint8")
    return keras.Model(pixels, model(_ToFloat(name="to_float")(pixels)), name=f"{model.name}_uint8")


def steps_per_epoch(data: TrainingData, batch_size: int) -> int:
    """Batches in one epoch of ``data.train`` (the optimizer steps a schedule counts).

    Raises:
        ValueError: A pipeline whose length TensorFlow does not know (a caller's bug: the
            trainer's pipelines have a known length).
    """
    if isinstance(data.train, tuple):
        return math.ceil(len(data.train[0]) / batch_size)
    steps = int(data.train.cardinality())
    if steps < 1:
        raise ValueError(f"The training pipeline's length is unknown. Received: {steps}")
    return steps


def continue_schedule(
    optimizer: keras.optimizers.Optimizer, epochs_into_phase: int, steps: int
) -> None:
    """Puts a resumed phase's optimizer step where its learning-rate schedule goes on.

    The checkpoint holds the step, taken at an epoch's end; it differs from the epochs done
    times the steps per epoch only where the batch size changed since (an out-of-memory retry
    halves it), and the schedule then goes on from the same point of the phase.
    """
    step = epochs_into_phase * steps
    if int(optimizer.iterations) != step:
        optimizer.iterations.assign(step)


def early_stopping_monitor(
    settings: EarlyStoppingSettings, has_validation: bool, metrics: Sequence[str]
) -> tuple[str, Info | None]:
    """The metric early stopping watches, and a notice where it is not the one asked for.

    Without validation data a ``val_*`` monitor falls back to the training metric of the same
    name (``val_loss`` -> ``loss``): the job still stops early and keeps its best weights rather
    than failing after the data was staged.

    Raises:
        Incompatible: The monitor is neither ``loss`` nor one of the compiled metrics.
    """
    monitor = settings.monitor
    name = monitor.removeprefix("val_")
    known = ["loss", *metrics]
    if name not in known:
        raise Incompatible(
            f"training.early_stopping.monitor {monitor!r} is not a metric this job logs; use one "
            f"of {', '.join(repr(n) for n in known + ['val_' + k for k in known])}."
        )
    if monitor == name or has_validation:
        return monitor, None
    notice = Info(
        f"There is no validation data, so early stopping monitors {name!r} instead of {monitor!r}.",
        {"monitor": name, "requested_monitor": monitor},
    )
    return name, notice


def early_stopping(
    settings: EarlyStoppingSettings | None, has_validation: bool, metrics: Sequence[str]
) -> keras.callbacks.EarlyStopping | None:
    """The EarlyStopping callback for a phase (see early_stopping_monitor), or None.

    Raises:
        Incompatible: The monitor is neither ``loss`` nor one of the compiled metrics.
    """
    if settings is None:
        return None
    monitor, _ = early_stopping_monitor(settings, has_validation, metrics)
    return keras.callbacks.EarlyStopping(
        monitor=monitor,
        patience=settings.patience,
        min_delta=settings.min_delta,
        restore_best_weights=settings.restore_best_weights,
        verbose=0,
    )


def _fit(
    model: keras.Model,
    data: TrainingData,
    initial_epoch: int,
    epochs: int,
    phase: Phase,
    callbacks: list[keras.callbacks.Callback],
    batch_size: int,
    class_weight: dict[int, float] | None = None,
) -> None:
    if isinstance(data.train, tuple):
        # In-memory arrays: fit batches and reshuffles them every epoch.
        images, labels = data.train
        arguments: dict[str, Any] = {
            "x": images,
            "y": labels,
            "batch_size": batch_size,
            "shuffle": True,
        }
    else:
        # The pipeline batches and shuffles; Keras cannot shuffle a tf.data.Dataset.
        arguments = {"x": data.train, "shuffle": False}
    try:
        model.fit(
            **arguments,
            class_weight=class_weight,
            validation_data=data.validation,
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=0,
        )
    except Exception as exc:
        if _is_out_of_memory(exc):
            raise OutOfMemory(
                f"Training ran out of memory in phase {phase.index + 1}. Lower "
                "training.batch_size or dataset.image_size, or freeze more layers."
            ) from exc
        text = str(exc).lower()
        if type(exc).__name__ == "InvalidArgumentError" and (
            "decode" in text or "image file format" in text
        ):
            raise InvalidDataset(
                "An image in the dataset could not be decoded (it may be truncated or "
                "mislabelled); re-encode or remove it."
            ) from exc
        raise


def _is_out_of_memory(exc: BaseException) -> bool:
    """TensorFlow's ResourceExhaustedError, or XLA's RESOURCE_EXHAUSTED under JAX.

    Not where the disk is full: TensorFlow reports ENOSPC as RESOURCE_EXHAUSTED too.
    """
    if is_disk_full(exc):
        return False
    # Looked up where TensorFlow is already loaded: fit must not import it under another backend.
    tf = sys.modules.get("tensorflow")
    exhausted = getattr(getattr(tf, "errors", None), "ResourceExhaustedError", None)
    if exhausted is not None and isinstance(exc, exhausted):
        return True
    return "RESOURCE_EXHAUSTED" in str(exc)


def _final_metrics(
    phase_history: list[dict[str, Any]], stopper: keras.callbacks.EarlyStopping | None
) -> tuple[dict[str, float], int | None]:
    if not phase_history:
        return {}, None
    chosen = phase_history[-1]
    restored = None
    if stopper is not None and stopper.restore_best_weights and stopper.best_weights is not None:
        # EarlyStopping restores its best weights at the end of fit, also without stopping.
        best = stopper.best_epoch + 1
        for entry in phase_history:
            if entry["epoch"] == best:
                chosen, restored = entry, best
    metrics = {k: v for k, v in chosen.items() if k not in ("epoch", "phase")}
    return metrics, restored
