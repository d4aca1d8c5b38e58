"""Writing the trained model: a SavedModel for serving and a ``.keras`` file for the next job."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras

from service.contract.layout import KERAS_FILE, SAVED_MODEL_DIR


@dataclass(frozen=True)
class ExportedModel:
    """Names of what export_model wrote, relative to the output folder."""

    saved_model_dir: str = SAVED_MODEL_DIR
    keras_file: str = KERAS_FILE


def export_model(model: keras.Model, output_dir: str | os.PathLike[str]) -> ExportedModel:
    """Writes ``saved_model/`` and ``model.keras`` under ``output_dir``, replacing old copies.

    The SavedModel's ``serve`` and ``serving_default`` signatures take ``image``: float32 raw
    pixels of shape (batch, height, width, channels), and return ``output_0``: class scores.
    Dropout and BatchNormalization run in inference mode there. ``model.keras`` loads with
    plain Keras: a learning-rate schedule is saved as the rate it reached.

    Args:
        model: The trained model (input named ``image``).
        output_dir: A local folder; created if missing.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved_model = out / SAVED_MODEL_DIR
    if saved_model.exists():
        shutil.rmtree(saved_model)
    model.export(str(saved_model), format="tf_saved_model", verbose=False)
    keras_file = out / KERAS_FILE
    # Written under a temporary name first, so a crash leaves no half-written model.keras.
    partial = out / f".partial-{KERAS_FILE}"
    with _portable_learning_rate(model):
        model.save(partial)
    os.replace(partial, keras_file)
    return ExportedModel()


@contextlib.contextmanager
def _portable_learning_rate(model: keras.Model) -> Iterator[None]:
    """While saving, the optimizer's schedule is a Keras built-in one: the rate it reached.

    The phase schedules (schedules.PhaseLearningRate) are a class of this service: a
    ``model.keras`` naming one would load only where the service's code is imported
    (``keras.saving.load_model`` elsewhere fails to rebuild the optimizer), and the next job's
    model check refuses classes outside Keras. So the file's optimizer keeps its state and
    continues at the rate training ended with, held constant; the manifest records the schedule.
    """
    optimizer = getattr(model, "optimizer", None)
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # within a LossScaleOptimizer
    schedule = None if inner is None else inner.get_config()["learning_rate"]
    if not isinstance(schedule, dict):  # a float rate, or not compiled
        yield
        return
    assert inner is not None
    reached = float(inner.learning_rate)
    inner.learning_rate = keras.optimizers.schedules.ExponentialDecay(
        reached, decay_steps=1, decay_rate=1.0, name="rate_reached"
    )
    try:
        yield
    finally:
        inner.learning_rate = keras.saving.deserialize_keras_object(schedule)
