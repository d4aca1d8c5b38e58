"""Writing the trained model: a SavedModel for serving and a ``.keras`` file for the next job."""

from __future__ import annotations

import os
import shutil
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
    Dropout and BatchNormalization run in inference mode there.

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
    model.save(partial)
    os.replace(partial, keras_file)
    return ExportedModel()
