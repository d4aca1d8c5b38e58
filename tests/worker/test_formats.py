"""Fine-tuning from every model format and every dataset format, through the worker, on S3.

The worker runs in-process with its job state in a bucket on the moto server (real S3 over
HTTP); the trainer runs in its spawned child as in production. Each result is loaded back: the
SavedModel with ``tf.saved_model.load``, and a ``model.keras`` as the base of a second job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas import JobSpecSchema
from service.config import Config
from service.context import Services, build_services
from service.jobs import JobRecord, JobStatus
from service.storage.s3 import S3ObjectStore
from service.worker import Worker
from tests.helpers.data import (
    digit_images,
    write_archive,
    write_image_folder,
    write_npz,
    write_tfrecords,
)
from tests.helpers.legacy_models import pretrain_tf_keras_cnn, tf_keras_lambda_model
from tests.helpers.models import pretrain_tiny_cnn

pytestmark = pytest.mark.slow

CLASSES = ("0", "1", "2")
DIGITS = (0, 1, 2)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small pretrained model per format and the digits 0-2 in every dataset format."""
    root = tmp_path_factory.mktemp("formats")
    keras_file = root / "models" / "base.keras"
    model = pretrain_tiny_cnn(keras_file, per_class=30, epochs=3)
    model.save(root / "models" / "base.h5")
    folder = write_image_folder(root / "folder", CLASSES, per_class=20, digits=DIGITS, seed=1)
    return {
        "keras": keras_file,
        "h5": root / "models" / "base.h5",
        "keras2_h5": pretrain_tf_keras_cnn(root / "models" / "keras2.h5", per_class=20),
        "keras2_saved_model": pretrain_tf_keras_cnn(
            root / "models" / "keras2_saved_model", per_class=20
        ),
        "folder": folder,
        "zip": write_archive(folder, root / "data" / "digits.zip", wrap="train"),
        "tar": write_archive(folder, root / "data" / "digits.tar.gz"),
        "npz": write_npz(root / "data" / "digits.npz", DIGITS, per_class=20, seed=2),
        "npz_validation": write_npz(root / "data" / "val.npz", DIGITS, per_class=6, seed=3),
        "tfrecord": write_tfrecords(root / "data" / "tfrecord", DIGITS, per_class=20, seed=4)[
            0
        ].parent,
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


def _store(services: Services, bucket: str) -> S3ObjectStore:
    return services.storage.bucket(bucket)


def _upload(services: Services, bucket: str, local: Path, key: str) -> str:
    store = _store(services, bucket)
    if local.is_dir():
        store.upload_dir(local, key)
        return f"s3://{bucket}/{key.rstrip('/')}/"
    store.upload_file(local, key)
    return f"s3://{bucket}/{key}"


def _spec(base: str, train: str, out: str, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "base_model": {"uri": base},
        "dataset": {"train": train, "preprocessing": "rescale", "validation_split": 0.2},
        "head": {"cut_at": "gap"},
        "freeze": "base",
        "training": {"epochs": 2, "batch_size": 16, "learning_rate": 0.01, "seed": 3},
        "output": {"uri": out},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    spec: dict[str, Any] = JobSpecSchema().load(raw)
    return spec


def _run(services: Services, spec: dict[str, Any]) -> JobRecord:
    created = services.jobs.create(spec)
    assert Worker(services).run_once()
    return services.jobs.get(created.id)


def _manifest(services: Services, record: JobRecord) -> dict[str, Any]:
    assert record.result is not None
    store, key = services.storage.open(record.result["manifest_uri"])
    manifest: dict[str, Any] = json.loads(store.get(key).data)
    return manifest


def _serve_and_check(services: Services, record: JobRecord, tmp_path: Path) -> None:
    """The SavedModel loads with tf.saved_model.load and scores raw pixels, 3 classes."""
    import tensorflow as tf

    assert record.result is not None
    store, prefix = services.storage.open(record.result["saved_model_uri"])
    local = tmp_path / f"served-{record.id}"
    store.download_prefix(prefix, local)
    serve = tf.saved_model.load(str(local)).signatures["serving_default"]
    images, _ = digit_images(DIGITS, 2, seed=9)
    scores = serve(image=tf.constant(images.astype(np.float32)))["output_0"].numpy()
    assert scores.shape == (6, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def _succeeded(record: JobRecord) -> dict[str, Any]:
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.result is not None
    return record.result


def test_keras_base_on_a_folder_prefix_then_a_chained_job_on_a_tar_gz(
    services: Services, bucket: str, local: dict[str, Path], tmp_path: Path
) -> None:
    base = _upload(services, bucket, local["keras"], "models/base.keras")
    train = _upload(services, bucket, local["folder"], "data/folder/")

    first = _run(services, _spec(base, train, f"s3://{bucket}/out/v1/"))

    result = _succeeded(first)
    _serve_and_check(services, first, tmp_path)
    manifest = _manifest(services, first)
    assert manifest["class_names"] == list(CLASSES)
    assert manifest["inputs"]["dataset"]["dataset.train"]["format"] == "image_folder"
    assert len(manifest["inputs"]["dataset"]["dataset.train"]["files"]) == 60
    assert manifest["inputs"]["base_model"]["format"] == "keras"
    assert set(manifest["versions"]) >= {"tensorflow", "keras", "service"}
    assert [p["epochs_run"] for p in manifest["phases"]] == [2]
    assert manifest["phases"][0]["seconds"] > 0
    assert [(h["epoch"], h["phase"]) for h in manifest["history"]] == [(1, 0), (2, 0)]
    assert manifest["spec"]["training"]["mixed_precision"] == "auto"  # defaults filled in
    assert manifest["input"]["dtype"] == "float32" and manifest["input"]["shape"] == [
        None,
        32,
        32,
        3,
    ]

    # The CI refresh chain: the first job's model.keras is the next job's base.
    tarball = _upload(services, bucket, local["tar"], "data/digits.tar.gz")
    second = _run(
        services,
        _spec(
            result["keras_uri"],
            tarball,
            f"s3://{bucket}/out/v2/",
            dataset={"preprocessing": "none"},  # the first model rescales inside already
            head={"cut_at": "gap"},
            freeze={"until": "conv2"},
        ),
    )

    _succeeded(second)
    _serve_and_check(services, second, tmp_path)
    chained = _manifest(services, second)
    assert chained["inputs"]["dataset"]["dataset.train"]["format"] == "image_folder"
    (archive,) = chained["inputs"]["dataset"]["dataset.train"]["files"]
    assert archive["key"] == "digits.tar.gz" and len(archive["sha256"]) == 64
    assert chained["inputs"]["base_model"]["sha256"] != manifest["inputs"]["base_model"]["sha256"]


@pytest.mark.parametrize(
    ("model", "model_key", "data", "data_key", "expected"),
    [
        ("h5", "models/base.h5", "zip", "data/digits.zip", ("h5", "image_folder")),
        ("keras2_h5", "models/keras2.h5", "npz", "data/digits.npz", ("h5", "npz")),
        (
            "keras2_saved_model",
            "models/keras2_saved_model/",
            "tfrecord",
            "data/tfrecord/",
            ("saved_model", "tfrecord"),
        ),
    ],
)
def test_model_and_dataset_format(
    model: str,
    model_key: str,
    data: str,
    data_key: str,
    expected: tuple[str, str],
    services: Services,
    bucket: str,
    local: dict[str, Path],
    tmp_path: Path,
) -> None:
    base = _upload(services, bucket, local[model], model_key)
    train = _upload(services, bucket, local[data], data_key)

    record = _run(services, _spec(base, train, f"s3://{bucket}/out/"))

    result = _succeeded(record)
    _serve_and_check(services, record, tmp_path)
    manifest = _manifest(services, record)
    assert (
        manifest["inputs"]["base_model"]["format"],
        manifest["inputs"]["dataset"]["dataset.train"]["format"],
    ) == expected
    assert manifest["class_names"] == list(CLASSES)
    assert result["keras_uri"].endswith("/model.keras")


def test_tfrecord_glob_with_an_npz_validation_set(
    services: Services, bucket: str, local: dict[str, Path], tmp_path: Path
) -> None:
    base = _upload(services, bucket, local["keras"], "models/base.keras")
    _upload(services, bucket, local["tfrecord"], "data/records/")
    validation = _upload(services, bucket, local["npz_validation"], "data/val.npz")

    record = _run(
        services,
        _spec(
            base,
            f"s3://{bucket}/data/records/train-*.tfrecord",
            f"s3://{bucket}/out/",
            dataset={"validation": validation},
        ),
    )

    _succeeded(record)
    manifest = _manifest(services, record)
    assert manifest["inputs"]["dataset"]["dataset.train"]["format"] == "tfrecord"
    assert len(manifest["inputs"]["dataset"]["dataset.train"]["files"]) == 2
    assert manifest["inputs"]["dataset"]["dataset.validation"]["format"] == "npz"
    assert set(manifest["metrics"]) >= {"val_accuracy", "val_loss"}


def test_gate_missed_on_s3_writes_nothing_under_the_output(
    services: Services, bucket: str, local: dict[str, Path]
) -> None:
    base = _upload(services, bucket, local["keras"], "models/base.keras")
    train = _upload(services, bucket, local["folder"], "data/folder/")

    record = _run(
        services,
        _spec(
            base,
            train,
            f"s3://{bucket}/gated/",
            training={"epochs": 1},
            gate={"metric": "val_accuracy", "min": 1.01},
        ),
    )

    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "gate_failed"
    assert list(_store(services, bucket).list("gated/")) == []


def test_tf_keras_saved_model_with_a_lambda_is_refused_and_never_runs(
    services: Services, bucket: str, local: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    evil = tf_keras_lambda_model(tmp_path / "evil_saved_model", marker)
    base = _upload(services, bucket, evil, "models/evil/")
    train = _upload(services, bucket, local["folder"], "data/folder/")

    record = _run(services, _spec(base, train, f"s3://{bucket}/out/"))

    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "invalid_model"
    assert "Lambda layer" in record.error["message"]
    assert not marker.exists()


def test_zip_slip_archive_is_refused_and_nothing_lands_outside_the_scratch(
    services: Services, bucket: str, local: dict[str, Path], tmp_path: Path
) -> None:
    import zipfile

    work = services.config.work_dir
    escape_name = f"escaped-{os.getpid()}.txt"
    crafted = tmp_path / "slip.zip"
    with zipfile.ZipFile(crafted, "w") as archive:
        archive.writestr("a/1.png", b"\x89PNG\r\n\x1a\n")
        archive.writestr("../../../../" + escape_name, b"owned")
    base = _upload(services, bucket, local["keras"], "models/base.keras")
    train = _upload(services, bucket, crafted, "data/slip.zip")

    record = _run(services, _spec(base, train, f"s3://{bucket}/out/"))

    assert record.status is JobStatus.FAILED
    assert record.error and record.error["code"] == "invalid_dataset"
    assert "leads outside" in record.error["message"]
    for folder in (work, work.parent, tmp_path, Path("/tmp")):
        assert not (folder / escape_name).exists()
