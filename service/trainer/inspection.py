"""The dry run's trainer side: open the model, read the data sample, check that they fit.

Runs in a spawned child of the API (service.dryrun), on a sample of the data that the API staged.
It goes as far as it can and collects every problem it finds, each under the spec field at fault,
rather than stopping at the first: the client gets all of them in one 422. Nothing is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import keras
import numpy as np

from service.contract.request import TrainingRequest
from service.trainer.architectures import open_planned_base
from service.trainer.compiling import check_loss_and_metrics
from service.trainer.data import (
    check_classes,
    check_same_classes,
    class_weights,
    label_mode_for_loss,
    source_of_format,
)
from service.trainer.errors import TrainerError
from service.trainer.fitting import early_stopping
from service.trainer.freezing import Freezer
from service.trainer.loading import LoadedModel
from service.trainer.model_surgery import BuiltModel, build_model, resolve_image_shape
from service.trainer.plan import TrainingPlan
from service.trainer.precision import resolve_policy
from service.trainer.sources import Examples, read_examples

#: Images per dataset whose size the report shows.
SIZE_SAMPLE = 16


@dataclass
class Findings:
    """Field errors (dotted path -> messages), warnings, and the report so far."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def check(self, step: Callable[[], Any]) -> Any:
        """Runs ``step``; a TrainerError becomes a field error and the result None."""
        try:
            return step()
        except TrainerError as exc:
            self.errors.setdefault(exc.field or "base_model.uri", []).append(exc.message)
            return None


def inspect(request: TrainingRequest, sampled: bool = True) -> dict[str, Any]:
    """Checks a job spec against its base model and (a sample of) its data.

    Args:
        request: The spec and the staged sample (paths and formats).
        sampled: Whether the data is a sample (class counts from TFRecords are then partial).

    Returns:
        ``{"errors": {field path: [message, ...]}, "report": {...}}``; no errors means valid.
        The report's keys are described by schemas.dry_run.DryRunReportSchema.
    """
    found = Findings()
    plan: TrainingPlan | None = found.check(lambda: TrainingPlan.from_spec(request.spec))
    if plan is None:
        return {"errors": found.errors, "report": found.report}
    found.check(lambda: check_loss_and_metrics(plan.training.loss, plan.training.metrics))
    policy = found.check(lambda: resolve_policy(plan.training.mixed_precision))
    label_mode = label_mode_for_loss(plan.training.loss)
    found.report.update(precision=policy, preprocessing=plan.data.preprocessing)

    loaded: LoadedModel | None = found.check(
        lambda: open_planned_base(plan, request.base_model_path)
    )
    train = found.check(lambda: _examples(request.train_path, request.train_format, "train"))
    validation = None
    if request.validation_path is not None:
        validation = found.check(
            lambda: _examples(
                request.validation_path or "",
                request.validation_format or request.train_format,
                "validation",
            )
        )
    found.report["data"] = {
        "train": None if train is None else _describe_data(train, sampled),
        "validation": None if validation is None else _describe_data(validation, sampled),
    }
    partial_classes = sampled and train is not None and train.source == "tfrecord"
    if partial_classes:
        found.warnings.append(
            "dataset.train: only the first TFRecord file was sampled, so its classes may be "
            "fewer than the full data's; the job counts them from all files."
        )
    if train is not None:
        found.check(lambda: check_classes(train, label_mode))
        if validation is not None and not partial_classes:
            found.check(lambda: check_same_classes(train, validation))
        found.check(
            lambda: class_weights(plan.training.class_weight, train.class_names, train.counts())
        )
    found.check(
        lambda: early_stopping(
            plan.training.early_stopping,
            validation is not None or plan.data.validation_split > 0,
            plan.training.metrics,
            lambda message: found.warnings.append(str(message["message"])),
        )
    )
    if loaded is None:
        return _result(found)
    found.report["model"] = _describe_model(loaded)
    image_shape = found.check(lambda: resolve_image_shape(loaded.model, plan.data.image_size))
    if image_shape is None and plan.data.image_size is not None:
        # Go on at the model's own size, to find the spec's other problems too.
        image_shape = found.check(lambda: resolve_image_shape(loaded.model, None))
    if image_shape is None:
        return _result(found)
    found.report["image_shape"] = list(image_shape)
    num_classes = _class_count(plan, train, partial_classes, found)
    if num_classes is None:
        return _result(found)
    head = plan.head
    if head is not None and head.num_classes is not None and head.num_classes != num_classes:
        found.errors.setdefault("head.num_classes", []).append(
            f"head.num_classes is {head.num_classes} but the data has {num_classes} classes "
            f"({', '.join(train.class_names[:10]) if train else ''}). Leave head.num_classes "
            "out to use the classes found, or fix the data."
        )
        head = replace(head, num_classes=None)  # go on with the data's count
    built: BuiltModel | None = found.check(
        lambda: build_model(
            loaded.model,
            image_shape=image_shape,
            preprocessing=plan.data.preprocessing,
            head=head,
            num_classes=num_classes,
            label_mode=label_mode,
        )
    )
    if built is None:
        return _result(found)
    found.report["head"] = (
        None
        if built.cut_layer is None
        else {
            "cut_layer": built.cut_layer,
            "feature_shape": list(built.feature_shape),
            "layers": [layer.name for layer in built.head_layers],
            "output_units": built.output_units,
        }
    )
    found.report["output_units"] = built.output_units
    freezer = Freezer(built)
    phases = []
    for phase in plan.phases:
        summary = found.check(partial(freezer.apply, phase.freeze, phase.freeze_field))
        if summary is None:
            continue
        phases.append(
            {
                "index": phase.index,
                "epochs": phase.epochs,
                "learning_rate": phase.learning_rate,
                "freeze": phase.freeze.to_spec(),
                "frozen_layers": summary.frozen_layers,
                "frozen_batch_norms": summary.frozen_batch_norms,
                "trainable_weights": summary.trainable_weights,
                "trainable_params": summary.trainable_params,
                "non_trainable_params": summary.non_trainable_params,
            }
        )
    found.report["phases"] = phases
    return _result(found)


def _result(found: Findings) -> dict[str, Any]:
    found.report["warnings"] = found.warnings
    return {"errors": found.errors, "report": found.report}


def _examples(path: str, data_format: str, which: str) -> Examples:
    return read_examples(path, source_of_format(data_format), f"dataset.{which}")


def _class_count(
    plan: TrainingPlan, train: Examples | None, partial: bool, found: Findings
) -> int | None:
    wanted = plan.head.num_classes if plan.head is not None else None
    if train is None:
        return wanted
    have = len(train.class_names)
    if partial and wanted is not None and have <= wanted:
        return wanted  # the first file shows no more classes than asked for: fine so far
    return have


def _describe_data(examples: Examples, sampled: bool) -> dict[str, Any]:
    return {
        "format": examples.source,
        "class_names": examples.class_names,
        "sampled": sampled,
        "examples_in_sample": len(examples),
        "counts_in_sample": examples.counts(),
        "image_shapes": _image_shapes(examples),
    }


def _image_shapes(examples: Examples) -> list[list[int]]:
    """Distinct (height, width, channels) among the first images of the sample."""
    shapes: set[tuple[int, ...]] = set()
    if examples.source == "npz" and examples.pixels is not None:
        shapes.add(tuple(int(d) for d in examples.pixels.shape[1:]))
    elif examples.source == "image_folder":
        from PIL import Image

        for path in examples.files[:SIZE_SAMPLE]:
            try:
                with Image.open(path) as image:
                    shapes.add((image.height, image.width, len(image.getbands())))
            except OSError:
                continue
    elif examples.source == "tfrecord":
        import tensorflow as tf

        features = {"image": tf.io.FixedLenFeature([], tf.string)}
        for raw in tf.data.TFRecordDataset(list(examples.shards)).take(SIZE_SAMPLE):
            data = tf.io.parse_single_example(raw, features)["image"]
            shape = tf.io.decode_image(data, expand_animations=False).shape
            shapes.add(tuple(int(d) for d in shape))
    return [list(shape) for shape in sorted(shapes)]


def _describe_model(loaded: LoadedModel) -> dict[str, Any]:
    model = loaded.model
    return {
        "format": loaded.file_format,
        "written_by": loaded.written_by,
        "reader": loaded.reader,
        "input_shape": list(model.inputs[0].shape) if model.inputs else None,
        "output_shape": [list(o.shape) for o in model.outputs] if model.outputs else None,
        "layer_count": len(model.layers),
        "layers": [
            {
                "index": index,
                "name": layer.name,
                "class_name": type(layer).__name__,
                "weights": len(layer.weights),
                "params": int(sum(np.prod(w.shape) for w in layer.weights)),
                "trainable_in_file": bool(layer.trainable),
            }
            for index, layer in enumerate(model.layers)
        ],
        "params": int(model.count_params()),
        "keras": keras.__version__,
        **({"architecture": loaded.architecture} if loaded.architecture else {}),
    }
