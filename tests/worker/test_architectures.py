"""Fine-tuning named architectures from weights files in S3, through the worker.

The worker runs in-process with its job state in a bucket on the moto server (real S3 over
HTTP); the trainer runs in its spawned child as in production. The weights files are written
here (no internet) in Keras's published ``.h5`` layout and by ``save_weights``, with distinct
random values, so the loaded-weights digest in the events shows the file was really used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas import JobSpecSchema
from service.config import Config
from service.context import Services, build_services
from service.jobs import JobRecord, JobStatus
from service.trainer.architectures import weights_digest
from service.worker import Worker
from tests.helpers.architectures import build, perturb, write_published_h5, write_weights_h5
from tests.helpers.data import digit_images, write_image_folder

pytestmark = pytest.mark.slow

CLASSES = ("0", "1", "2")
DIGITS = (0, 1, 2)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Weights files and the digits 0-2 as a class-folder tree."""
    root = tmp_path_factory.mktemp("architectures")
    v2 = build("MobileNetV2", alpha=0.35)
    v2_values = perturb(v2, seed=1)
    v3 = build("MobileNetV3Small", alpha=0.75, minimalistic=True)
    v3_values = perturb(v3, seed=2)
    top = build("MobileNetV2", alpha=0.35, include_top=True)
    return {
        "v2_h5": write_published_h5(v2, root / "mobilenet_v2_0.35_no_top.h5"),
        "v2_digest": weights_digest(v2_values),
        "v3_weights_h5": write_weights_h5(v3, root / "v3_small.weights.h5"),
        "v3_digest": weights_digest(v3_values),
        "v2_top_h5": write_published_h5(top, root / "mobilenet_v2_0.35_top.h5"),
        "v2_050_h5": write_published_h5(
            build("MobileNetV2", alpha=0.5), root / "mobilenet_v2_0.5_no_top.h5"
        ),
        "folder": write_image_folder(root / "folder", CLASSES, per_class=12, digits=DIGITS, seed=1),
    }


@pytest.fixture
def services(s3_env: dict[str, str], bucket: str, tmp_path: Path) -> Iterator[Services]:
    """Job state in the test's bucket on moto; scratch in a temporary folder."""
    yield build_services(
        Config(
            state_uri=f"s3://{bucket}/state",
            work_dir=tmp_path / "work",
            allow_local_storage=False,
            heartbeat_seconds=0.5,
        )
    )


def _upload(services: Services, bucket: str, local: Path, key: str) -> str:
    store = services.storage.bucket(bucket)
    if local.is_dir():
        store.upload_dir(local, key)
        return f"s3://{bucket}/{key.rstrip('/')}/"
    store.upload_file(local, key)
    return f"s3://{bucket}/{key}"


def _spec(base: dict[str, Any], train: str, out: str, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "base_model": base,
        "dataset": {"train": train, "validation_split": 0.25, "image_size": [32, 32]},
        "head": {},
        "freeze": "base",
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.01, "seed": 3},
        "output": {"uri": out},
        **overrides,
    }
    spec: dict[str, Any] = JobSpecSchema().load(raw)
    return spec


def _run(services: Services, spec: dict[str, Any]) -> JobRecord:
    created = services.jobs.create(spec)
    assert Worker(services).run_once()
    return services.jobs.get(created.id)


def _architecture_event(services: Services, record: JobRecord) -> dict[str, Any]:
    events = services.jobs.read_events(record.id)
    (named,) = [e.data["architecture"] for e in events if "architecture" in (e.data or {})]
    found: dict[str, Any] = named
    return found


def _download(services: Services, uri: str, local: Path) -> Path:
    store, key = services.storage.open(uri)
    if key.endswith("/"):
        store.download_prefix(key, local)
    else:
        local.parent.mkdir(parents=True, exist_ok=True)
        store.download_file(key, local)
    return local


def test_mobilenet_v2_from_a_published_h5_serves_raw_pixels(
    services: Services, bucket: str, local: dict[str, Any], tmp_path: Path
) -> None:
    import keras
    import tensorflow as tf

    weights = _upload(services, bucket, local["v2_h5"], "weights/mobilenet_v2_0.35_no_top.h5")
    train = _upload(services, bucket, local["folder"], "data/folder/")
    spec = _spec(
        {"architecture": "MobileNetV2", "weights_uri": weights, "options": {"alpha": 0.35}},
        train,
        f"s3://{bucket}/out/v2/",
        schedule=[
            {"epochs": 1, "freeze": "base"},
            {"epochs": 1, "learning_rate": 1e-4, "freeze": {"until": "block_13_expand"}},
        ],
    )

    record = _run(services, spec)

    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.result is not None
    named = _architecture_event(services, record)
    assert named["built"] == "MobileNetV2(alpha=0.35, include_top=False)"
    assert named["loaded_weights_digest"] == local["v2_digest"]  # the file was really used
    assert named["weights_layout"] == "legacy"
    assert (named["layers_loaded"], named["weights_loaded"]) == (104, 260)
    manifest_store, key = services.storage.open(record.result["manifest_uri"])
    manifest = json.loads(manifest_store.get(key).data)
    base = manifest["inputs"]["base_model"]
    assert base["sha256"] == named["weights_sha256"]
    assert base["uri"] == weights and base["architecture"]["name"] == "MobileNetV2"
    assert manifest["spec"]["dataset"]["preprocessing"] == "auto"
    assert manifest["phases"][1]["freeze"] == {"until": "block_13_expand"}

    # Raw pixels in; the same as the Keras model after mobilenet_v2's preprocess_input by hand.
    saved = _download(services, record.result["saved_model_uri"], tmp_path / "saved")
    keras_file = _download(services, record.result["keras_uri"], tmp_path / "model.keras")
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    images, _ = digit_images(DIGITS, 2, seed=9)
    raw = images.astype(np.float32)
    served = serve(image=tf.constant(raw))["output_0"].numpy()
    model = keras.saving.load_model(keras_file, compile=False)
    after_preprocessing = keras.Model(model.get_layer("preprocess").output, model.output)
    by_hand = keras.applications.mobilenet_v2.preprocess_input(raw.copy())
    expected = after_preprocessing.predict(by_hand, verbose=0)
    assert served.shape == (6, 3)
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_mobilenet_v3_from_save_weights_file(
    services: Services, bucket: str, local: dict[str, Any]
) -> None:
    weights = _upload(services, bucket, local["v3_weights_h5"], "weights/v3_small.weights.h5")
    train = _upload(services, bucket, local["folder"], "data/folder/")
    spec = _spec(
        {
            "architecture": "MobileNetV3Small",
            "weights_uri": weights,
            "options": {"alpha": 0.75, "minimalistic": True},
        },
        train,
        f"s3://{bucket}/out/v3/",
    )

    record = _run(services, spec)

    assert record.status is JobStatus.SUCCEEDED, record.error
    named = _architecture_event(services, record)
    assert named["loaded_weights_digest"] == local["v3_digest"]
    assert named["weights_layout"] == "keras3"


@pytest.mark.parametrize(
    ("file", "words"),
    [("v2_050_h5", "shape"), ("v2_top_h5", "'predictions'")],
    ids=["another-alpha", "with-top-for-no-top"],
)
def test_mismatched_weights_file_fails_incompatible_naming_both(
    services: Services, bucket: str, local: dict[str, Any], file: str, words: str
) -> None:
    name = local[file].name
    weights = _upload(services, bucket, local[file], f"weights/{name}")
    train = _upload(services, bucket, local["folder"], "data/folder/")
    spec = _spec(
        {"architecture": "MobileNetV2", "weights_uri": weights, "options": {"alpha": 0.35}},
        train,
        f"s3://{bucket}/out/bad/",
    )

    record = _run(services, spec)

    assert record.status is JobStatus.FAILED
    assert record.error is not None and record.error["code"] == "incompatible"
    message = record.error["message"]
    assert "MobileNetV2(alpha=0.35, include_top=False)" in message and name in message
    assert words in message and "Traceback" not in message
