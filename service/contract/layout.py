"""The names of what a job publishes under ``output.uri``, stated once.

The trainer writes the model files and TensorBoard logs under its output folder, the worker
draws the history plot beside them, uploads them and writes the manifest last (its presence
marks a complete publish), with the final evaluation beside it.
"""

from __future__ import annotations

#: The SavedModel folder, for serving.
SAVED_MODEL_DIR = "saved_model"
#: The Keras file, the base model of the next job.
KERAS_FILE = "model.keras"
#: What went in and what came out; written last.
MANIFEST_FILE = "manifest.json"
#: TensorBoard event files (``train/``, ``validation/``).
TENSORBOARD_DIR = "tensorboard"
#: Loss and metrics per epoch, drawn by the worker.
HISTORY_PLOT_FILE = "history.png"
#: The final evaluation (result.evaluation, and result.comparison where there is one).
EVALUATION_FILE = "evaluation.json"
#: The final evaluation's confusion matrix, drawn by the worker.
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
