"""The steps a job's training and a dry run share, written once: plan to frozen phases.

``prepare`` seeds, checks loss and metrics, resolves the precision, opens the base model,
resolves the image shape, reads the data, holds out validation, weighs the classes, builds the
model and applies every phase's freeze rule. Its ``Problems`` say what a failing step does:

- in a job's training (run.train) the first problem raises and stops the run, before anything
  trains; train mode then fits, checkpoints and exports;
- in the dry run (inspection.inspect, on a sample) each problem is kept under the spec field it
  concerns and the steps go on as far as they can, so that one answer names every field at
  fault; nothing is trained.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

import keras
import tensorflow as tf

from service.contract.messages import Info
from service.contract.plan import TrainingPlan
from service.contract.request import TrainingRequest
from service.trainer.architectures import open_planned_base
from service.trainer.compiling import check_loss_and_metrics
from service.trainer.data import (
    check_classes,
    check_same_classes,
    class_weights,
    hold_out,
    label_mode_for_loss,
    read_dataset,
)
from service.trainer.errors import TrainerError
from service.trainer.fitting import early_stopping_monitor
from service.trainer.freezing import Freezer
from service.trainer.loading import LoadedModel
from service.trainer.model_safety import ModelLimits
from service.trainer.model_surgery import (
    BuiltModel,
    build_model,
    check_head_classes,
    resolve_image_shape,
)
from service.trainer.phases import PhaseSummary
from service.trainer.precision import apply_policy, resolve_policy
from service.trainer.preprocessing import own_input_scaling, preprocessing_mode
from service.trainer.sources import Examples

T = TypeVar("T")

#: Where a TrainerError that names no field is reported.
DEFAULT_FIELD = "base_model.uri"


@dataclass
class Problems:
    """What a failing step does: raise at once, or (``collect``) keep its error and go on.

    Attributes:
        collect: Keep every error (the dry run) rather than raise the first (a job).
        errors: Under ``collect``: spec field (dotted path) -> messages.
        notes: What the user should know that is no error (a job's info events, the dry
            run's warnings).
    """

    collect: bool
    errors: dict[str, list[str]] = field(default_factory=dict)
    notes: list[Info] = field(default_factory=list)

    def check(self, step: Callable[[], T]) -> T | None:
        """Runs ``step``; under ``collect`` a TrainerError is kept and the result is None."""
        try:
            return step()
        except TrainerError as exc:
            if not self.collect:
                raise
            self.errors.setdefault(exc.field or DEFAULT_FIELD, []).append(exc.message)
            return None

    def passes(self, step: Callable[[], object]) -> bool:
        """Runs the check ``step``; whether it raised no TrainerError (see ``check``)."""
        failed = len(self.errors)
        self.check(step)
        return len(self.errors) == failed


@dataclass
class Prepared:
    """What the shared steps produced; a field stays None where its step (or one before) failed.

    Attributes:
        plan: The spec read into typed settings (service.contract.plan).
        seed: Seeds the hold-out split, the shuffling and the augmentation.
        policy: The dtype policy (``float32``, ``mixed_float16``, ...).
        label_mode: ``categorical``, ``int`` or ``binary`` (data.label_mode_for_loss).
        loaded: The base model and where it came from.
        image_shape: (height, width, channels) to train at.
        staged_train: The training examples as staged.
        staged_validation: The validation examples as staged; None where none were.
        train: The training examples as fit reads them (validation held out).
        validation: The validation examples as fit reads them; None: no validation.
        class_weight: Label index -> weight for ``fit``; None: unweighted.
        built: The model to train.
        phases: What each phase freezes (those whose rule fits).
    """

    plan: TrainingPlan
    seed: int = 0
    policy: str | None = None
    label_mode: str = ""
    loaded: LoadedModel | None = None
    image_shape: tuple[int, int, int] | None = None
    staged_train: Examples | None = None
    staged_validation: Examples | None = None
    train: Examples | None = None
    validation: Examples | None = None
    class_weight: dict[int, float] | None = None
    built: BuiltModel | None = None
    phases: list[PhaseSummary] = field(default_factory=list)


def model_limits(request: TrainingRequest) -> ModelLimits | None:
    """The request's limits on the base model; None where it sets none."""
    if request.max_input_pixels is None or request.max_model_params is None:
        return None
    return ModelLimits(request.max_input_pixels, request.max_model_params)


def prepare(request: TrainingRequest, problems: Problems) -> Prepared:
    """Runs the shared steps on the request's staged model and data (see the module's doc)."""
    # The schema loaded the spec: a key it lacks is a bug of the caller, never a field error.
    plan = TrainingPlan.from_spec(request.spec)
    found = Prepared(plan)
    training = plan.training
    found.seed = seed_everything(training.seed)
    problems.check(lambda: check_loss_and_metrics(training.loss, training.metrics))
    found.policy = problems.check(lambda: resolve_policy(training.mixed_precision))
    found.label_mode = label_mode_for_loss(training.loss)
    limits = model_limits(request)
    loaded = found.loaded = problems.check(
        lambda: open_planned_base(plan, request.base_model_path, limits)
    )
    if loaded is not None:
        found.image_shape = problems.check(
            lambda: resolve_image_shape(loaded.model, plan.data.image_size)
        )
        if found.image_shape is None and plan.data.image_size is not None:
            # Go on at the model's own size, to find the spec's other problems too.
            found.image_shape = problems.check(lambda: resolve_image_shape(loaded.model, None))
    partial_classes = _read_data(request, plan, found, problems)
    stopping = training.early_stopping
    if stopping is not None:
        chosen = problems.check(
            lambda: early_stopping_monitor(
                stopping, _has_validation(request, plan, found), training.metrics
            )
        )
        if chosen is not None and chosen[1] is not None:
            problems.notes.append(chosen[1])  # it watches another metric than asked for
    num_classes = _class_count(plan, found.train, partial_classes)
    head = plan.head
    names = [] if found.train is None else found.train.class_names
    if (
        head is not None
        and num_classes is not None
        and not problems.passes(lambda: check_head_classes(head, num_classes, names))
    ):
        head = replace(head, num_classes=None)  # go on with the data's count
    if loaded is None or found.image_shape is None or num_classes is None:
        return found
    image_shape, policy = found.image_shape, found.policy
    found.built = problems.check(
        lambda: build_model(
            loaded.model if policy is None else apply_policy(loaded.model, policy),
            image_shape=image_shape,
            preprocessing=plan.data.preprocessing,
            head=head,
            num_classes=num_classes,
            label_mode=found.label_mode,
        )
    )
    if found.built is not None:
        _note_double_scaling(found.built, plan, problems)
        found.phases = _freeze_phases(found.built, plan, problems)
    return found


def _note_double_scaling(built: BuiltModel, plan: TrainingPlan, problems: Problems) -> None:
    """A note where the spec's preprocessing runs before the base's own input scaling."""
    kind = plan.data.preprocessing
    own = own_input_scaling(built.layers.layers)
    if preprocessing_mode(kind) == "none" or not own:
        return
    names = [built.layers.path(layer) for layer in own]
    problems.notes.append(
        Info(
            f"dataset.preprocessing is {kind!r} but the base model scales its input itself "
            f"({', '.join(map(repr, names))}), so the pixels are scaled twice. Set "
            "dataset.preprocessing to 'none' (what 'auto' means for a model file) unless the "
            "model expects both.",
            {"preprocessing": kind, "base_input_scaling": names},
        )
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


def _read_data(
    request: TrainingRequest, plan: TrainingPlan, found: Prepared, problems: Problems
) -> bool:
    """Reads and checks the staged data into ``found``; whether its classes may be partial."""
    train = found.staged_train = problems.check(
        lambda: read_dataset(request.train_path, request.train_format, "train")
    )
    validation_path = request.validation_path
    if validation_path is not None:
        found.staged_validation = problems.check(
            lambda: read_dataset(
                validation_path, request.validation_format or request.train_format, "validation"
            )
        )
    partial_classes = request.sampled and train is not None and train.source == "tfrecord"
    if partial_classes:
        problems.notes.append(
            Info(
                "dataset.train: only the first TFRecord file was sampled, so its classes may be "
                "fewer than the full data's; the job counts them from all files."
            )
        )
    if train is None:
        return partial_classes
    validation = found.staged_validation
    problems.check(lambda: check_classes(train, found.label_mode))
    if validation is not None and not partial_classes:
        problems.check(lambda: check_same_classes(train, validation))
    training = plan.training
    found.train, found.validation = hold_out(
        train, validation, plan.data.validation_split, found.seed
    )
    held = found.train
    found.class_weight = problems.check(
        lambda: class_weights(training.class_weight, held.class_names, held.counts())
    )
    return partial_classes


def _has_validation(request: TrainingRequest, plan: TrainingPlan, found: Prepared) -> bool:
    """Whether the job validates: a sample may hold out no image where the full data will."""
    if request.sampled:
        return request.validation_path is not None or plan.data.validation_split > 0
    return found.validation is not None


def _class_count(plan: TrainingPlan, train: Examples | None, partial_classes: bool) -> int | None:
    """The classes to build for: the data's, else (data unread) the head's, where it says."""
    wanted = plan.head.num_classes if plan.head is not None else None
    if train is None:
        return wanted
    have = len(train.class_names)
    if partial_classes and wanted is not None and have <= wanted:
        return wanted  # the first file shows no more classes than asked for: fine so far
    return have


def _freeze_phases(built: BuiltModel, plan: TrainingPlan, problems: Problems) -> list[PhaseSummary]:
    """Every phase's freezing, checked before anything trains; the model is left as built."""
    freezer = Freezer(built)
    summaries = [
        problems.check(partial(PhaseSummary.freeze, freezer, phase, len(plan.phases)))
        for phase in plan.phases
    ]
    freezer.rewind()  # fitting applies each phase's rule again when the phase starts
    return [summary for summary in summaries if summary is not None]
