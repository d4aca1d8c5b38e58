"""The job spec read in one place: typed plans built from the spec the schema loaded.

``schemas.JobSpecSchema().load`` validates a spec and fills in every default; the plan only
converts what it finds. It states no default and checks nothing the schema checked: a key that
is not there raises SpecKeyMissing naming it (a spec that skipped the schema is a caller's bug).
``TrainingPlan`` is what the trainer reads; ``JobPlan`` adds what the worker and the API read
(sources, output, gate, limits, notification). Plain data: no TensorFlow, no I/O.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from service.contract.architectures import ARCHITECTURES, INCLUDE_TOP, INCLUDE_TOP_DEFAULT
from service.contract.errors import SpecKeyMissing
from service.contract.preprocessing import AUTO, NO_PREPROCESSING
from service.contract.recipe import CONSTANT

FreezeWord = Literal["none", "base"]
FreezeKey = Literal["first_n", "until", "pattern"]
FreezeKind = Literal[FreezeWord, FreezeKey]
#: ``freeze`` as a string: these words; as an object: exactly one of these keys.
FREEZE_WORDS: tuple[str, ...] = get_args(FreezeWord)
FREEZE_KEYS: tuple[str, ...] = get_args(FreezeKey)


class _Section:
    """One object of a loaded spec, read by key; a missing key raises SpecKeyMissing."""

    def __init__(self, raw: Mapping[str, Any], path: str = "") -> None:
        self._raw = raw
        self._path = path

    def __getitem__(self, key: str) -> Any:
        try:
            return self._raw[key]
        except KeyError:
            raise SpecKeyMissing(self.where(key)) from None

    def where(self, key: str) -> str:
        """The dotted path of ``key`` in the spec."""
        return f"{self._path}.{key}" if self._path else key

    def section(self, key: str) -> _Section | None:
        """The object under ``key``, or None where the spec holds null there."""
        value = self[key]
        return None if value is None else _Section(value, self.where(key))

    def required(self, key: str) -> _Section:
        """The object under ``key``, which the schema never leaves null."""
        value = self[key]
        if value is None:
            raise SpecKeyMissing(self.where(key))
        return _Section(value, self.where(key))


@dataclass(frozen=True)
class FreezeRule:
    """Which base layers to freeze; see freezing.select_frozen for the meaning of each kind.

    Attributes:
        kind: ``none``, ``base``, ``first_n``, ``until`` or ``pattern``.
        value: The count (first_n), the layer name (until) or the regex (pattern); None for
            ``none`` and ``base``.
    """

    kind: FreezeKind
    value: int | str | None

    @classmethod
    def from_spec(cls, raw: str | Mapping[str, int | str]) -> FreezeRule:
        """The rule of a ``freeze`` value as the schema loaded it (schemas.fields.FreezeField)."""
        if isinstance(raw, str):
            return cls(cast(FreezeKind, raw), None)
        ((kind, value),) = raw.items()
        return cls(cast(FreezeKind, kind), value)

    def to_spec(self) -> str | dict[str, int | str]:
        """The rule in the spec's own form (JSON-able)."""
        if self.value is None:
            return self.kind
        return {self.kind: self.value}

    def describe(self) -> str:
        """The rule as a user wrote it, for messages."""
        return json.dumps(self.to_spec())


@dataclass(frozen=True)
class HeadSettings:
    """A new classification head (spec ``head``)."""

    cut_at: int | str
    pooling: str
    hidden_units: tuple[int, ...]
    dropout: float
    num_classes: int | None
    l2: float


@dataclass(frozen=True)
class ArchitectureSettings:
    """A named architecture (spec ``base_model.architecture`` and ``options``)."""

    name: str
    options: dict[str, Any]

    @property
    def include_top(self) -> bool:
        """Whether the weights file holds the classifier top (option ``include_top``)."""
        return bool(self.options.get(INCLUDE_TOP, INCLUDE_TOP_DEFAULT))

    def describe(self) -> str:
        """The constructor call as a user reads it: ``MobileNetV2(alpha=0.35, include_top=False)``.

        Only the spec's options are shown; ``weights`` is always None.
        """
        shown = {k: v for k, v in self.options.items() if k != INCLUDE_TOP}
        args = [f"{k}={v!r}" for k, v in sorted(shown.items())]
        args.append(f"{INCLUDE_TOP}={self.include_top}")
        return f"{self.name}({', '.join(args)})"


@dataclass(frozen=True)
class DataSettings:
    """How to read the images (spec ``dataset``).

    Attributes:
        preprocessing: ``dataset.preprocessing`` with ``auto`` resolved: the named
            architecture's family, else ``none``.
    """

    format: str
    image_size: tuple[int, int] | None
    validation_split: float
    preprocessing: str


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """Spec ``training.early_stopping``."""

    monitor: str
    patience: int
    restore_best_weights: bool
    min_delta: float


@dataclass(frozen=True)
class AugmentationSettings:
    """Spec ``training.augmentation``: random changes to training images only."""

    flip: str
    rotation: float
    zoom: float

    @property
    def active(self) -> bool:
        """Whether anything changes the images."""
        return self.flip != "none" or self.rotation > 0 or self.zoom > 0


@dataclass(frozen=True)
class LrScheduleSettings:
    """Spec ``lr_schedule`` (of ``training`` or of a phase): the learning rate within a phase.

    Attributes:
        type: ``constant``, ``cosine`` or ``exponential`` (service.contract.recipe).
        warmup_epochs: Epochs of linear warmup at the phase's start.
        min_learning_rate: Where cosine and exponential decay to by the phase's end.
    """

    type: str
    warmup_epochs: int
    min_learning_rate: float

    @property
    def constant(self) -> bool:
        """Whether the rate never moves: constant, without warmup."""
        return self.type == CONSTANT and self.warmup_epochs == 0

    def describe(self) -> str:
        """The schedule in words, for messages: ``cosine to 1e-06 after 1 warmup epoch``."""
        words = self.type if self.type == CONSTANT else f"{self.type} to {self.min_learning_rate:g}"
        if self.warmup_epochs:
            plural = "s" if self.warmup_epochs > 1 else ""
            words += f" after {self.warmup_epochs} warmup epoch{plural}"
        return words


@dataclass(frozen=True)
class TrainingSettings:
    """Spec ``training``, less what phases override.

    Attributes:
        early_stopping: None: no early stopping.
        class_weight: None, ``"balanced"`` or class name -> weight.
        augmentation: None: no augmentation.
        mixed_precision: ``auto``, ``off``, ``mixed_float16`` or ``mixed_bfloat16``.
        label_smoothing: Of the loss; 0: none.
        weight_decay: Of the optimizer; None: the optimizer's own.
        momentum: Of the optimizer; None: the optimizer's own.
        nesterov: Nesterov momentum (SGD).
        clipnorm: Largest gradient norm per weight; None: no clipping.
        feature_cache: ``auto`` (compute a frozen prefix once where it pays) or ``off``.
    """

    batch_size: int
    optimizer: str
    loss: str
    metrics: tuple[str, ...]
    early_stopping: EarlyStoppingSettings | None
    seed: int | None
    class_weight: str | dict[str, float] | None
    augmentation: AugmentationSettings | None
    mixed_precision: str
    label_smoothing: float
    weight_decay: float | None
    momentum: float | None
    nesterov: bool
    clipnorm: float | None
    feature_cache: str


@dataclass(frozen=True)
class Phase:
    """One ``model.fit`` run with its own freeze rule and learning rate.

    Attributes:
        index: 0-based position in the schedule.
        epochs: Epochs planned for this phase.
        learning_rate: The optimizer's learning rate in this phase.
        freeze: What is frozen in this phase.
        freeze_field: The spec field the rule came from, for messages.
        lr_schedule: How the learning rate moves within the phase.
    """

    index: int
    epochs: int
    learning_rate: float
    freeze: FreezeRule
    freeze_field: str
    lr_schedule: LrScheduleSettings


@dataclass(frozen=True)
class Resources:
    """Spec ``resources``: what one job uses of one worker's machine.

    Attributes:
        gpus: Devices of one machine the job trains on, data parallel (1: no distribution).
    """

    gpus: int


@dataclass(frozen=True)
class TrainingPlan:
    """Everything the trainer reads from a job spec.

    Attributes:
        base_model_format: ``auto``, ``keras``, ``h5`` or ``saved_model``.
        architecture: A named architecture (``base_model.architecture``), or None for a model
            file.
        data: Dataset settings.
        head: The new head, or None to keep the model's own output.
        training: Optimizer, loss, metrics, batch size, early stopping, seed.
        phases: At least one phase; one from ``training`` and ``freeze`` when no schedule.
        resources: The devices the job trains on.
    """

    base_model_format: str
    architecture: ArchitectureSettings | None
    data: DataSettings
    head: HeadSettings | None
    training: TrainingSettings
    phases: tuple[Phase, ...]
    resources: Resources

    @property
    def total_epochs(self) -> int:
        """Epochs planned over all phases."""
        return sum(phase.epochs for phase in self.phases)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TrainingPlan:
        """Reads a loaded job spec (``schemas.JobSpecSchema().load`` output).

        Raises:
            SpecKeyMissing: The spec lacks a key (it did not come through the schema).
        """
        return cls._read(_Section(spec))

    @classmethod
    def _read(cls, spec: _Section) -> TrainingPlan:
        base = spec.required("base_model")
        name, options = base["architecture"], base["options"]
        architecture = None
        if name is not None:
            architecture = ArchitectureSettings(name=str(name), options=dict(options))
        head = spec.section("head")
        training = spec.required("training")
        return cls(
            base_model_format=str(base["format"]),
            architecture=architecture,
            data=_data_settings(spec.required("dataset"), architecture),
            head=None if head is None else _head_settings(head),
            training=_training_settings(training),
            phases=_phases(spec, training),
            resources=Resources(gpus=int(spec.required("resources")["gpus"])),
        )


def _head_settings(raw: _Section) -> HeadSettings:
    return HeadSettings(
        cut_at=raw["cut_at"],
        pooling=str(raw["pooling"]),
        hidden_units=tuple(int(units) for units in raw["hidden_units"]),
        dropout=float(raw["dropout"]),
        num_classes=raw["num_classes"],
        l2=float(raw["l2"]),
    )


def _data_settings(raw: _Section, architecture: ArchitectureSettings | None) -> DataSettings:
    size = raw["image_size"]
    return DataSettings(
        format=str(raw["format"]),
        image_size=None if size is None else (int(size[0]), int(size[1])),
        validation_split=float(raw["validation_split"]),
        preprocessing=_resolved_preprocessing(str(raw["preprocessing"]), architecture),
    )


def _resolved_preprocessing(kind: str, architecture: ArchitectureSettings | None) -> str:
    """``dataset.preprocessing`` with ``auto`` resolved: the architecture's family, else none."""
    if kind != AUTO:
        return kind
    if architecture is None:
        return NO_PREPROCESSING
    return ARCHITECTURES[architecture.name].family


def _training_settings(raw: _Section) -> TrainingSettings:
    class_weight = raw["class_weight"]
    return TrainingSettings(
        batch_size=int(raw["batch_size"]),
        optimizer=str(raw["optimizer"]),
        loss=str(raw["loss"]),
        metrics=tuple(str(metric) for metric in raw["metrics"]),
        early_stopping=_early_stopping(raw.section("early_stopping")),
        seed=raw["seed"],
        class_weight=dict(class_weight) if isinstance(class_weight, Mapping) else class_weight,
        augmentation=_augmentation(raw.section("augmentation")),
        mixed_precision=str(raw["mixed_precision"]),
        label_smoothing=float(raw["label_smoothing"]),
        weight_decay=_optional_float(raw["weight_decay"]),
        momentum=_optional_float(raw["momentum"]),
        nesterov=bool(raw["nesterov"]),
        clipnorm=_optional_float(raw["clipnorm"]),
        feature_cache=str(raw["feature_cache"]),
    )


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _lr_schedule(raw: _Section) -> LrScheduleSettings:
    return LrScheduleSettings(
        type=str(raw["type"]),
        warmup_epochs=int(raw["warmup_epochs"]),
        min_learning_rate=float(raw["min_learning_rate"]),
    )


def _early_stopping(raw: _Section | None) -> EarlyStoppingSettings | None:
    if raw is None:
        return None
    return EarlyStoppingSettings(
        monitor=str(raw["monitor"]),
        patience=int(raw["patience"]),
        restore_best_weights=bool(raw["restore_best_weights"]),
        min_delta=float(raw["min_delta"]),
    )


def _augmentation(raw: _Section | None) -> AugmentationSettings | None:
    if raw is None:
        return None
    return AugmentationSettings(
        flip=str(raw["flip"]), rotation=float(raw["rotation"]), zoom=float(raw["zoom"])
    )


def _phases(spec: _Section, training: _Section) -> tuple[Phase, ...]:
    """The schedule's phases; without one, one phase of ``training.epochs`` and ``freeze``."""
    learning_rate = float(training["learning_rate"])
    spec_freeze = FreezeRule.from_spec(spec["freeze"])
    lr_schedule = _lr_schedule(training.required("lr_schedule"))
    schedule = spec["schedule"]
    if schedule is None:
        epochs = int(training["epochs"])
        return (Phase(0, epochs, learning_rate, spec_freeze, "freeze", lr_schedule),)
    phases = []
    for index, entry in enumerate(schedule):
        raw = _Section(entry, f"schedule[{index}]")
        # A phase's null learning_rate, freeze or lr_schedule means the spec's own.
        rate, freeze, own_schedule = raw["learning_rate"], raw["freeze"], raw.section("lr_schedule")
        phases.append(
            Phase(
                index=index,
                epochs=int(raw["epochs"]),
                learning_rate=learning_rate if rate is None else float(rate),
                freeze=spec_freeze if freeze is None else FreezeRule.from_spec(freeze),
                freeze_field="freeze" if freeze is None else raw.where("freeze"),
                lr_schedule=lr_schedule if own_schedule is None else _lr_schedule(own_schedule),
            )
        )
    return tuple(phases)


@dataclass(frozen=True)
class BaseModelSource:
    """Where the base model comes from (spec ``base_model``): exactly one of the two URIs.

    Attributes:
        uri: A model file or SavedModel folder, or None with a named architecture.
        weights_uri: The named architecture's weights file, or None with a model file.
    """

    uri: str | None
    weights_uri: str | None

    @property
    def location(self) -> str:
        """The one URI the worker downloads: the model file's, else the weights file's."""
        location = self.uri or self.weights_uri
        assert location is not None, "the schema requires uri or weights_uri"
        return location


@dataclass(frozen=True)
class DatasetSource:
    """Where the images come from (spec ``dataset``).

    Attributes:
        train: The training data's URI (prefix, object or glob).
        validation: The validation data's URI, or None to hold out part of train.
        test: The held-out test data's URI (only the final evaluation reads it), or None.
        format: ``dataset.format`` as given (``auto`` is decided when staging).
    """

    train: str
    validation: str | None
    test: str | None
    format: str


@dataclass(frozen=True)
class CompareWith:
    """Spec ``compare_with``: the champion, exactly one of the two URIs.

    Attributes:
        model_uri: A model file or SavedModel folder, or None.
        alias_uri: An alias object whose current target is the champion, or None.
    """

    model_uri: str | None
    alias_uri: str | None


@dataclass(frozen=True)
class Gate:
    """Spec ``gate``: bars the new model must clear.

    Attributes:
        metric: ``<m>`` (training), ``val_<m>`` or ``test_<m>`` (the final evaluation).
        min, max: Bounds on the metric's value, or None.
        min_delta: Least improvement over the champion in ``metric``, or None.
        max_class_drop: Most any class's recall may fall below the champion's, or None.
    """

    metric: str
    min: float | None
    max: float | None
    min_delta: float | None
    max_class_drop: float | None


@dataclass(frozen=True)
class Limits:
    """Spec ``limits``."""

    max_runtime_seconds: int
    max_attempts: int


@dataclass(frozen=True)
class JobPlan:
    """Everything the service reads from a job spec: the trainer's plan and the job's edges.

    Attributes:
        name: The job's free-text name, or None.
        labels: The job's key=value labels.
        base_model: Where the base model is.
        dataset: Where the data is.
        output_uri: The prefix the results go under (``output.uri``).
        output_overwrite: Whether a model already published there may be replaced.
        promote_alias_uri: The alias the published model becomes the target of, or None.
        gate: The bar the final metric must clear, or None.
        compare_with: The champion to evaluate beside the new model, or None.
        limits: Run time and attempts.
        webhook_url: ``notify.webhook_url``, or None.
        training_plan: What the trainer reads.
    """

    name: str | None
    labels: dict[str, str]
    base_model: BaseModelSource
    dataset: DatasetSource
    output_uri: str
    output_overwrite: bool
    promote_alias_uri: str | None
    gate: Gate | None
    compare_with: CompareWith | None
    limits: Limits
    webhook_url: str | None
    training_plan: TrainingPlan

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> JobPlan:
        """Reads a loaded job spec (``schemas.JobSpecSchema().load`` output).

        Raises:
            SpecKeyMissing: The spec lacks a key (it did not come through the schema).
        """
        raw = _Section(spec)
        base, dataset = raw.required("base_model"), raw.required("dataset")
        gate, limits, notify = raw.section("gate"), raw.required("limits"), raw.section("notify")
        output, promote = raw.required("output"), raw.section("promote")
        compare = raw.section("compare_with")
        return cls(
            name=raw["name"],
            labels=dict(raw["labels"]),
            base_model=BaseModelSource(uri=base["uri"], weights_uri=base["weights_uri"]),
            dataset=DatasetSource(
                train=str(dataset["train"]),
                validation=dataset["validation"],
                test=dataset["test"],
                format=str(dataset["format"]),
            ),
            output_uri=str(output["uri"]),
            output_overwrite=bool(output["overwrite"]),
            promote_alias_uri=None if promote is None else str(promote["alias_uri"]),
            gate=None
            if gate is None
            else Gate(
                gate["metric"], gate["min"], gate["max"], gate["min_delta"], gate["max_class_drop"]
            ),
            compare_with=None
            if compare is None
            else CompareWith(model_uri=compare["model_uri"], alias_uri=compare["alias_uri"]),
            limits=Limits(
                max_runtime_seconds=int(limits["max_runtime_seconds"]),
                max_attempts=int(limits["max_attempts"]),
            ),
            webhook_url=None if notify is None else str(notify["webhook_url"]),
            training_plan=TrainingPlan._read(raw),
        )


def with_batch_size(spec: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    """A copy of a loaded spec with ``training.batch_size`` replaced (an out-of-memory retry)."""
    changed = copy.deepcopy(dict(spec))
    changed["training"]["batch_size"] = batch_size
    return changed


def with_name_and_labels(
    raw: Mapping[str, Any], name: str | None, labels: Mapping[str, str]
) -> dict[str, Any]:
    """A spec as a client wrote it, with ``name`` set (unless None) and ``labels`` added.

    Unlike the plans this takes a spec before the schema loaded it: the CLI's spec file.
    """
    changed = dict(raw)
    if labels:
        changed["labels"] = {**(raw.get("labels") or {}), **labels}
    if name is not None:
        changed["name"] = name
    return changed
