"""The final evaluation: the trained model, and the champion beside it, on held-out images.

It runs after training, on ``dataset.test`` where the job has one, else on the validation
images. The test set is read (listed and checked) before training, so that a bad one fails
early, but its images are decoded only here: nothing of it reaches training, early stopping or
the choice of the weights kept. The champion (``compare_with``) is loaded through the base
model's checks (loading.open_base_model), before training for the same reason, and scored on
the same images at the input size it was trained at: its preprocessing is inside the model,
as in every model this service exports. Its outputs are matched to the new model's classes by
name (its manifest's class names), or taken in the new model's class order where it has no
manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from service.contract.messages import Info
from service.contract.request import ChampionModel, TrainingRequest
from service.trainer.data import check_same_classes_as_train, ordered_images, read_dataset
from service.trainer.errors import Incompatible, InvalidModel
from service.trainer.loading import open_base_model
from service.trainer.scoring import as_probabilities, deltas, per_class_deltas, score
from service.trainer.sources import Examples, names_text

#: Where compare_with's failures are reported.
COMPARE_FIELD = "compare_with"


@dataclass
class Champion:
    """The champion, loaded and checked against the new model's classes.

    Attributes:
        uri: Where it is stored.
        model: The loaded model.
        image_shape: (height, width, channels) it takes.
        order: For each of the new model's classes, the champion's output column.
    """

    uri: str
    model: keras.Model
    image_shape: tuple[int, int, int]
    order: list[int]


def read_test(request: TrainingRequest, train: Examples) -> Examples | None:
    """The request's test examples (listed and checked, nothing decoded), or None.

    Raises:
        InvalidDataset: The test set is unreadable or has other classes than train.
    """
    if request.test_path is None:
        return None
    test = read_dataset(request.test_path, request.test_format or request.train_format, "test")
    check_same_classes_as_train(train, test, "test")
    return test


def load_champion(champion: ChampionModel, class_names: list[str], channels: int) -> Champion:
    """Loads the champion through the base model's checks and matches its classes by name.

    Raises:
        InvalidModel: The file is unreadable or refused.
        Incompatible: Its classes are not the new model's, or its input does not fit.
    """
    try:
        model = open_base_model(champion.path).model
    except InvalidModel as exc:
        reason = exc.message.removeprefix("base_model.uri: ")
        raise InvalidModel(
            f"compare_with: the champion {champion.uri} cannot be used: {reason}",
            field=COMPARE_FIELD,
        ) from exc
    outputs = _output_units(model)
    if champion.class_names is not None:
        theirs = list(champion.class_names)
        if sorted(theirs) != sorted(class_names):
            raise Incompatible(
                f"compare_with: the champion {champion.uri} knows the classes "
                f"{names_text(theirs)}, the new model {names_text(class_names)}. Compare with "
                "a model of the same classes, or leave compare_with out.",
                field=COMPARE_FIELD,
            )
        order = [theirs.index(name) for name in class_names]
    else:
        order = list(range(len(class_names)))
    width = 2 if outputs == 1 else outputs
    if width != len(class_names):
        raise Incompatible(
            f"compare_with: the champion {champion.uri} has {outputs} output units for "
            f"{len(class_names)} classes ({names_text(class_names)}). Compare with a model of "
            "the same classes, or leave compare_with out.",
            field=COMPARE_FIELD,
        )
    shape = champion.input_shape or list(model.input_shape[1:])
    if len(shape) != 3 or any(size is None for size in shape):
        raise Incompatible(
            f"compare_with: the champion {champion.uri} takes input of shape {shape}, not "
            "images of a fixed (height, width, channels).",
            field=COMPARE_FIELD,
        )
    height, width_px, its_channels = (int(size) for size in shape)
    if its_channels != channels:
        raise Incompatible(
            f"compare_with: the champion {champion.uri} takes {its_channels}-channel images, "
            f"the new model {channels}-channel ones.",
            field=COMPARE_FIELD,
        )
    return Champion(champion.uri, model, (height, width_px, its_channels), order)


def evaluate_model(
    model: keras.Model,
    examples: Examples,
    image_shape: tuple[int, int, int],
    batch_size: int,
    order: list[int] | None = None,
) -> dict[str, Any]:
    """A model's scores on ``examples`` (scoring.score), its outputs reordered by ``order``."""
    images = ordered_images(examples, image_shape, batch_size)
    outputs = np.asarray(model.predict(images, verbose=0))
    probabilities = as_probabilities(outputs)
    if order is not None:
        probabilities = probabilities[:, order]
    return score(examples.labels, probabilities, examples.class_names)


def final_evaluation(
    model: keras.Model,
    *,
    test: Examples | None,
    validation: Examples | None,
    image_shape: tuple[int, int, int],
    batch_size: int,
    champion: Champion | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[Info]]:
    """The evaluation and the comparison (None where they cannot be made), and what the
    job's events should say of them."""
    split, examples = ("test", test) if test is not None else ("validation", validation)
    if examples is None:
        note = "No test set and no validation images: the final evaluation was skipped."
        return None, None, [Info(note)]
    evaluation = {"split": split, **evaluate_model(model, examples, image_shape, batch_size)}
    metrics = evaluation["metrics"]
    notes = [
        Info(
            f"Evaluated on {evaluation['examples']} {split} images: "
            + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
            + ".",
            {"split": split, "metrics": metrics},
        )
    ]
    if champion is None:
        return evaluation, None, notes
    theirs = evaluate_model(
        champion.model, examples, champion.image_shape, batch_size, champion.order
    )
    comparison = {
        "model_uri": champion.uri,
        "split": split,
        "metrics": theirs["metrics"],
        "per_class": theirs["per_class"],
        "confusion_matrix": theirs["confusion_matrix"],
        "delta": deltas(evaluation, theirs),
        "per_class_delta": per_class_deltas(evaluation, theirs),
    }
    notes.append(
        Info(
            f"The champion {champion.uri} on the same images: "
            + ", ".join(
                f"{name} {value:.4f} ({comparison['delta'][name]:+.4f})"
                for name, value in theirs["metrics"].items()
            )
            + ".",
            {"model_uri": champion.uri, "metrics": theirs["metrics"], "delta": comparison["delta"]},
        )
    )
    return evaluation, comparison, notes


def _output_units(model: keras.Model) -> int:
    shape = model.output_shape
    if isinstance(shape, list):
        raise Incompatible(
            "compare_with: the champion has several outputs; compare with a classifier of one.",
            field=COMPARE_FIELD,
        )
    return int(shape[-1])
