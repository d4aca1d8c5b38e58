"""The trainer's model-building and fit code runs under the Keras JAX backend, without TensorFlow.

bench/gpu/ runs this code on the lent GPU machine, where TensorFlow cannot be installed; this
test is its guard here. A separate interpreter is the only way to pick another Keras backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax", reason="the JAX backend (dev dependency jax) is not installed")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys, tempfile
from dataclasses import dataclass
import keras, numpy as np
from service.trainer.devices import compile_settings
from service.trainer.fitting import fit_phases
from service.trainer.model_surgery import build_model
from tests.helpers.plans import head_settings, training_plan
from tests.helpers.models import build_tiny_cnn

@dataclass
class Data:
    train: tuple
    validation: tuple | None = None

built = build_model(build_tiny_cnn((16, 16, 3)), image_shape=(16, 16, 3), preprocessing="rescale",
                    head=head_settings(cut_at="gap", hidden_units=[8]), num_classes=2,
                    label_mode="categorical")
images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
labels = np.eye(2, dtype="float32")[np.arange(32) % 2]
plan = training_plan(head={}, freeze={"until": "relu1"}, training={"epochs": 2, "batch_size": 8})
messages = []
with tempfile.TemporaryDirectory() as checkpoints:
    result = fit_phases(built, Data((images, labels), (images, labels)), plan, messages.append,
                        checkpoint_dir=checkpoints)
print(json.dumps({
    "backend": keras.backend.backend(),
    "tensorflow_loaded": "tensorflow" in sys.modules,
    "jit_compile": compile_settings().jit_compile,
    "kinds": [type(m).__name__ for m in messages if type(m).__name__ != "Info"],
    "metrics": sorted(result.metrics),
}))
"""


def test_build_and_fit_run_under_jax_without_tensorflow() -> None:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])

    assert outcome["backend"] == "jax"
    assert outcome["tensorflow_loaded"] is False
    assert outcome["jit_compile"] == "auto"  # JAX without jit would run every op eagerly
    assert outcome["kinds"] == ["CheckpointWritten", "EpochEnded"] * 2
    assert outcome["metrics"] == ["accuracy", "loss", "val_accuracy", "val_loss"]
