"""The job spec read into typed settings: the one module that knows the spec's keys.

The spec arrives validated with defaults filled in (schemas.job_spec); the defaults here repeat
API.md's so that the trainer also runs from a hand-written, partial spec (tests, tools).
No TensorFlow here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from service.contract.architectures import ARCHITECTURES
from service.trainer.errors import Incompatible, InvalidDataset

FreezeKind = Literal["none", "base", "first_n", "until", "pattern"]


@dataclass(frozen=True)
class FreezeRule:
    """Which base layers to freeze; see freezing.select_frozen for the meaning of each kind.

    Attributes:
        kind: ``none``, ``base``, ``first_n``, ``until`` or ``pattern``.
        value: The count (first_n), the layer name (until) or the regex (pattern).
    """

    kind: FreezeKind
    value: int | str | None = None

    @classmethod
    def parse(cls, raw: Any, field: str = "freeze") -> FreezeRule:
        """Reads the spec's form: ``"none"``, ``"base"`` or a one-key object.

        Raises:
            Incompatible: The value is none of the accepted forms.
        """
        if raw is None or raw == "none":
            return cls("none")
        if raw == "base":
            return cls("base")
        if isinstance(raw, dict) and len(raw) == 1:
            ((key, value),) = raw.items()
            if key == "first_n" and isinstance(value, int) and not isinstance(value, bool):
                if value >= 0:
                    return cls("first_n", value)
            elif key == "until" and isinstance(value, str) and value:
                return cls("until", value)
            elif key == "pattern" and isinstance(value, str) and value:
                try:
                    re.compile(value)
                except re.error as exc:
                    raise Incompatible(
                        f"{field}.pattern {value!r} is not a valid regular expression: {exc}."
                    ) from exc
                return cls("pattern", value)
        raise Incompatible(
            f'{field} must be "none", "base", {{"first_n": N}}, {{"until": "layer_name"}} or '
            f'{{"pattern": "regex"}}. Received: {raw!r}.'
        )

    def to_spec(self) -> str | dict[str, int | str]:
        """The rule in the spec's own form (JSON-able)."""
        if self.kind in ("none", "base"):
            return self.kind
        assert self.value is not None
        return {self.kind: self.value}

    def describe(self) -> str:
        """The rule as a user wrote it, for messages."""
        return json.dumps(self.to_spec())


@dataclass(frozen=True)
class HeadSettings:
    """A new classification head (spec ``head``)."""

    cut_at: int | str = -2
    pooling: str = "avg"
    hidden_units: tuple[int, ...] = ()
    dropout: float = 0.0
    num_classes: int | None = None


@dataclass(frozen=True)
class ArchitectureSettings:
    """A named architecture (spec ``base_model.architecture`` and ``options``)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def include_top(self) -> bool:
        """Whether the weights file holds the classifier top (option ``include_top``)."""
        return bool(self.options.get("include_top", False))

    def describe(self) -> str:
        """The constructor call as a user reads it: ``MobileNetV2(alpha=0.35, include_top=False)``.

        Only the spec's options are shown; ``weights`` is always None.
        """
        shown = {k: v for k, v in self.options.items() if k != "include_top"}
        args = [f"{k}={v!r}" for k, v in sorted(shown.items())]
        args.append(f"include_top={self.include_top}")
        return f"{self.name}({', '.join(args)})"


@dataclass(frozen=True)
class DataSettings:
    """How to read the images (spec ``dataset``)."""

    format: str = "auto"
    image_size: tuple[int, int] | None = None
    validation_split: float = 0.2
    preprocessing: str = "none"


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """Spec ``training.early_stopping``."""

    monitor: str = "val_loss"
    patience: int = 3
    restore_best_weights: bool = True


@dataclass(frozen=True)
class AugmentationSettings:
    """Spec ``training.augmentation``: random changes to training images only."""

    flip: str = "none"
    rotation: float = 0.0
    zoom: float = 0.0

    @property
    def active(self) -> bool:
        """Whether anything changes the images."""
        return self.flip != "none" or self.rotation > 0 or self.zoom > 0


@dataclass(frozen=True)
class TrainingSettings:
    """Spec ``training``, less what phases override.

    Attributes:
        class_weight: None, ``"balanced"`` or class name -> weight.
        mixed_precision: ``auto``, ``off``, ``mixed_float16`` or ``mixed_bfloat16``.
    """

    batch_size: int = 32
    optimizer: str = "adam"
    loss: str = "categorical_crossentropy"
    metrics: tuple[str, ...] = ("accuracy",)
    early_stopping: EarlyStoppingSettings | None = None
    seed: int | None = None
    class_weight: str | dict[str, float] | None = None
    augmentation: AugmentationSettings = AugmentationSettings()
    mixed_precision: str = "auto"


@dataclass(frozen=True)
class Phase:
    """One ``model.fit`` run with its own freeze rule and learning rate.

    Attributes:
        index: 0-based position in the schedule.
        epochs: Epochs planned for this phase.
        learning_rate: The optimizer's learning rate in this phase.
        freeze: What is frozen in this phase.
        freeze_field: The spec field the rule came from, for messages.
    """

    index: int
    epochs: int
    learning_rate: float
    freeze: FreezeRule
    freeze_field: str = "freeze"


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
    """

    base_model_format: str
    architecture: ArchitectureSettings | None
    data: DataSettings
    head: HeadSettings | None
    training: TrainingSettings
    phases: tuple[Phase, ...]

    @property
    def total_epochs(self) -> int:
        """Epochs planned over all phases."""
        return sum(phase.epochs for phase in self.phases)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TrainingPlan:
        """Reads a job spec (API.md's shape).

        Raises:
            Incompatible: A freeze rule is malformed.
            InvalidDataset: The image size is malformed.
        """
        base = spec.get("base_model") or {}
        architecture = None
        if base.get("architecture"):
            architecture = ArchitectureSettings(
                name=str(base["architecture"]), options=dict(base.get("options") or {})
            )
        return cls(
            base_model_format=str(base.get("format") or "auto"),
            architecture=architecture,
            data=_data_settings(spec.get("dataset") or {}, architecture),
            head=_head_settings(spec.get("head")),
            training=_training_settings(spec.get("training") or {}),
            phases=_phases(spec),
        )


def _data_settings(
    raw: dict[str, Any], architecture: ArchitectureSettings | None = None
) -> DataSettings:
    size = raw.get("image_size")
    image_size: tuple[int, int] | None = None
    if size is not None:
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise InvalidDataset(
                f"dataset.image_size must be [height, width] in pixels. Received: {size!r}."
            )
        image_size = (int(size[0]), int(size[1]))
    split = raw.get("validation_split")
    return DataSettings(
        format=str(raw.get("format") or "auto"),
        image_size=image_size,
        validation_split=0.2 if split is None else float(split),
        preprocessing=resolve_preprocessing(str(raw.get("preprocessing") or "auto"), architecture),
    )


def resolve_preprocessing(kind: str, architecture: ArchitectureSettings | None) -> str:
    """``dataset.preprocessing`` with ``auto`` resolved: the architecture's family, else none."""
    if kind != "auto":
        return kind
    if architecture is None:
        return "none"
    known = ARCHITECTURES.get(architecture.name)
    return known.family if known is not None else "none"


def _head_settings(raw: dict[str, Any] | None) -> HeadSettings | None:
    if raw is None:
        return None
    cut_at = raw.get("cut_at", -2)
    return HeadSettings(
        cut_at=-2 if cut_at is None else cut_at,
        pooling=str(raw.get("pooling") or "avg"),
        hidden_units=tuple(int(u) for u in raw.get("hidden_units") or ()),
        dropout=float(raw.get("dropout") or 0.0),
        num_classes=raw.get("num_classes"),
    )


def _training_settings(raw: dict[str, Any]) -> TrainingSettings:
    stopping = raw.get("early_stopping")
    early_stopping = None
    if stopping is not None:
        early_stopping = EarlyStoppingSettings(
            monitor=str(stopping.get("monitor") or "val_loss"),
            patience=int(stopping.get("patience", 3)),
            restore_best_weights=bool(stopping.get("restore_best_weights", True)),
        )
    metrics = raw.get("metrics")
    augmentation = raw.get("augmentation") or {}
    class_weight = raw.get("class_weight")
    return TrainingSettings(
        batch_size=int(raw.get("batch_size") or 32),
        optimizer=str(raw.get("optimizer") or "adam"),
        loss=str(raw.get("loss") or "categorical_crossentropy"),
        metrics=("accuracy",) if metrics is None else tuple(str(m) for m in metrics),
        early_stopping=early_stopping,
        seed=raw.get("seed"),
        class_weight=dict(class_weight) if isinstance(class_weight, dict) else class_weight,
        augmentation=AugmentationSettings(
            flip=str(augmentation.get("flip") or "none"),
            rotation=float(augmentation.get("rotation") or 0.0),
            zoom=float(augmentation.get("zoom") or 0.0),
        ),
        mixed_precision=str(raw.get("mixed_precision") or "auto"),
    )


def _phases(spec: dict[str, Any]) -> tuple[Phase, ...]:
    training = spec.get("training") or {}
    learning_rate = float(training.get("learning_rate") or 1e-4)
    default_freeze = FreezeRule.parse(spec.get("freeze", "none"))
    schedule = spec.get("schedule")
    if not schedule:
        return (Phase(0, int(training.get("epochs") or 10), learning_rate, default_freeze),)
    phases = []
    for index, raw in enumerate(schedule):
        freeze = raw.get("freeze")
        field = "freeze" if freeze is None else f"schedule[{index}].freeze"
        phases.append(
            Phase(
                index=index,
                epochs=int(raw["epochs"]),
                learning_rate=float(raw.get("learning_rate") or learning_rate),
                freeze=default_freeze if freeze is None else FreezeRule.parse(freeze, field),
                freeze_field=field,
            )
        )
    return tuple(phases)
