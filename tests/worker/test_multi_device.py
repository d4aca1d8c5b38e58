"""A job of several devices through real trainer children: a CPU split into 2 logical devices
(the worker's FINETUNE_LOGICAL_DEVICES), MirroredStrategy over them, checkpoints and a resume,
and a SavedModel that serves in a plain process with one device.

No machine with several GPUs was at hand: the strategy runs here over logical CPU devices,
TensorFlow's own stand-in for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.contract.messages import CheckpointWritten, EpochEnded, Info, ProgressMessage, Ready
from service.contract.request import TrainingRequest
from service.worker.child_runner import TrainerPool
from service.worker.errors import JobFailure
from tests.helpers.data import digit_images, write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.trainer.support import make_request

pytestmark = pytest.mark.slow

#: The exported model, loaded and asked in a process that splits nothing and sees no GPU.
SERVE_ON_ONE_DEVICE = """
import json, sys
import numpy as np
import tensorflow as tf
import keras
saved, keras_file, images = sys.argv[1:4]
x = np.load(images)
served = tf.saved_model.load(saved).signatures["serving_default"](image=tf.constant(x))
scores = next(iter(served.values())).numpy()
again = keras.saving.load_model(keras_file).predict(x, verbose=0)
print(json.dumps({
    "devices": [d.name for d in tf.config.list_logical_devices()],
    "scores": scores.tolist(),
    "keras": again.tolist(),
}))
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pretrained tiny CNN (with BatchNormalization) and 3 classes of 32x32 images."""
    root = tmp_path_factory.mktemp("multi-device")
    pretrain_tiny_cnn(root / "model.keras", epochs=2, per_class=20)
    write_image_folder(root / "train", ["a", "b", "c"], per_class=9, digits=[0, 1, 2])
    write_image_folder(root / "validation", ["a", "b", "c"], per_class=4, digits=[0, 1, 2], seed=3)
    return {
        "model": root / "model.keras",
        "train": root / "train",
        "validation": root / "validation",
    }


def _request(tmp_path: Path, inputs: dict[str, Path], **sections: Any) -> TrainingRequest:
    request = make_request(
        tmp_path,
        inputs["model"],
        inputs["train"],
        inputs["validation"],
        head={"cut_at": "gap", "hidden_units": [8]},
        # 27 training images in batches of 26: the last batch of each epoch is 1 image, and
        # one replica's share of it is empty; the 12 validation images split 6 and 6. Two
        # phases: the base frozen (its BatchNormalization in inference mode), then the last
        # block too; each phase recompiles under the strategy.
        schedule=[
            {"epochs": 1, "freeze": "base"},
            {"epochs": 1, "freeze": {"until": "pool2"}, "learning_rate": 1e-4},
        ],
        training={"batch_size": 26, "class_weight": "balanced", "mixed_precision": "off"},
        **sections,
    )
    return replace(request, checkpoint_dir=str(tmp_path / "checkpoints"))


def test_a_two_device_job_trains_mirrored_resumes_and_serves_on_one_device(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    pool = TrainerPool(warm=False, logical_devices=2)
    try:
        assert pool.capacity() == Ready(devices=2, device_kind="cpu")
        messages: list[ProgressMessage] = []
        request = _request(tmp_path, inputs, resources={"gpus": 2})

        outcome = pool.train(request, messages.append, lambda: None)

        (strategy,) = [m for m in messages if isinstance(m, Info) and "strategy" in m.data]
        assert strategy.data["strategy"] == "MirroredStrategy"
        assert strategy.data["replicas"] == 2
        assert strategy.data["devices"] == ["/device:CPU:0", "/device:CPU:1"]
        assert "batch of 26 images is split across them (13 per replica)" in strategy.message
        assert [m.epoch for m in messages if isinstance(m, EpochEnded)] == [1, 2]
        checkpoints = [m for m in messages if isinstance(m, CheckpointWritten)]
        assert [c.epoch for c in checkpoints] == [1, 2]
        assert [entry["phase"] for entry in outcome.history] == [0, 1]
        assert all(np.isfinite(entry["loss"]) for entry in outcome.history), outcome.history

        # A lost worker's next attempt: from the checkpoint after epoch 1, only epoch 2 runs.
        resumed_messages: list[ProgressMessage] = []
        resumed = pool.train(
            replace(
                request,
                output_dir=str(tmp_path / "resumed"),
                checkpoint_dir=str(tmp_path / "resumed-checkpoints"),
                resume_from=checkpoints[0].path,
            ),
            resumed_messages.append,
            lambda: None,
        )
        assert [m.epoch for m in resumed_messages if isinstance(m, EpochEnded)] == [2]
        assert [entry["epoch"] for entry in resumed.history] == [1, 2]
        assert resumed.history[0] == outcome.history[0]
    finally:
        pool.close()

    served = _serve_on_one_device(tmp_path, Path(request.output_dir), outcome.saved_model_dir)
    assert served["devices"] == ["/device:CPU:0"]
    scores = np.asarray(served["scores"])
    assert scores.shape == (6, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    # The SavedModel and model.keras hold the same trained weights.
    np.testing.assert_allclose(scores, np.asarray(served["keras"]), rtol=1e-4, atol=1e-5)


def test_a_child_of_one_device_refuses_a_two_device_job_naming_the_field(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    pool = TrainerPool(warm=False)
    try:
        assert pool.capacity() == Ready(devices=1, device_kind="cpu")
        with pytest.raises(JobFailure) as failure:
            pool.train(_request(tmp_path, inputs, resources={"gpus": 2}), print, lambda: None)
    finally:
        pool.close()

    assert failure.value.code == "incompatible"
    assert failure.value.field == "resources.gpus"
    assert "asks for 2 devices; this worker's trainer holds 1 (cpu)" in failure.value.message


def _serve_on_one_device(tmp_path: Path, output: Path, saved_model_dir: str) -> dict[str, Any]:
    images, _ = digit_images([0, 1, 2], 2, size=32, seed=7)
    path = tmp_path / "images.npy"
    np.save(path, images.astype(np.float32))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_ON_ONE_DEVICE,
            str(output / saved_model_dir),
            str(output / "model.keras"),
            str(path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
