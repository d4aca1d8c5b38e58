"""The dry run's trainer side: the shared steps (pipeline.prepare) on a sample, described.

Runs in a trainer child on a sample of the data. It goes as far as it can and collects every
problem it finds, each under the spec field at fault, rather than stopping at the first: the
client gets all of them in one 422. Nothing is trained.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from service.contract.messages import InspectionFinished
from service.contract.request import TrainingRequest
from service.trainer.loading import LoadedModel
from service.trainer.model_safety import input_pixels
from service.trainer.nesting import BaseLayers
from service.trainer.pipeline import Prepared, Problems, model_limits, prepare
from service.trainer.sources import Examples

#: Images per dataset whose size the report shows.
SIZE_SAMPLE = 16


def inspect(request: TrainingRequest) -> InspectionFinished:
    """Checks a job spec against its base model and (a sample of) its data; trains nothing.

    Args:
        request: The spec and the staged sample (paths and formats); ``request.sampled`` says
            whether the data is a sample (class counts from TFRecords are then partial).

    Returns:
        The field errors (dotted path -> messages; none means valid) and the report, whose
        keys schemas.dry_run.DryRunReportSchema describes.
    """
    problems = Problems(collect=True)
    found = prepare(request, problems)
    return InspectionFinished(errors=problems.errors, report=_report(found, request, problems))


def _report(found: Prepared, request: TrainingRequest, problems: Problems) -> dict[str, Any]:
    train, validation = found.staged_train, found.staged_validation
    report: dict[str, Any] = {
        "precision": found.policy,
        "preprocessing": found.plan.data.preprocessing,
        "data": {
            "train": None if train is None else _describe_data(train, request.sampled),
            "validation": None
            if validation is None
            else _describe_data(validation, request.sampled),
        },
        "warnings": [note.message for note in problems.notes],
    }
    if found.loaded is not None:
        report["model"] = _describe_model(found.loaded)
        limits = model_limits(request)
        if limits is not None:
            report["model"]["limits"] = {
                "max_input_pixels": limits.max_input_pixels,
                "max_params": limits.max_params,
            }
    if found.image_shape is not None:
        report["image_shape"] = list(found.image_shape)
    built = found.built
    if built is not None:
        report["head"] = (
            None
            if built.cut_layer is None
            else {
                "cut_layer": built.cut_layer,
                "feature_shape": list(built.feature_shape),
                "layers": [layer.name for layer in built.head_layers],
                "output_units": built.output_units,
            }
        )
        report["output_units"] = built.output_units
        report["phases"] = [summary.report() for summary in found.phases]
    return report


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
    flat = BaseLayers.of(model)
    return {
        "format": loaded.file_format,
        "written_by": loaded.written_by,
        "reader": loaded.reader,
        "ignored": list(loaded.ignored),
        "input_shape": list(model.inputs[0].shape) if model.inputs else None,
        "input_pixels": input_pixels(list(model.inputs[0].shape)) if model.inputs else None,
        "output_shape": [list(o.shape) for o in model.outputs] if model.outputs else None,
        "layer_count": len(flat.layers),
        "layers": [
            {
                "index": index,
                "name": path,
                "class_name": type(layer).__name__,
                "weights": len(layer.weights),
                "params": int(sum(np.prod(w.shape) for w in layer.weights)),
                "trainable_in_file": bool(layer.trainable),
            }
            for index, (layer, path) in enumerate(zip(flat.layers, flat.paths, strict=True))
        ],
        "params": int(model.count_params()),
        "keras": keras.__version__,
        **({"architecture": loaded.architecture} if loaded.architecture else {}),
    }
