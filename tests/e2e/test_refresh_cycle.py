"""A CI refresh cycle against the real parts: moto in server mode (S3 over HTTP), the API under
gunicorn, a worker process, the ``finetune`` CLI, and real tiny Keras models.

1. v1 is trained and promoted to the alias (none existed).
2. A weaker recipe is refused by its gate: the alias is unchanged and nothing is published.
3. A better recipe is promoted; the alias's history holds v1.
4. ``finetune alias rollback`` points the alias at v1 again.
5. A job whose overall test accuracy rose over v1 (``min_delta`` passes) but whose recall of one
   class fell is blocked by ``gate.max_class_drop``.

The gates of steps 2, 3 and 5 compare each job with the alias's current model
(``compare_with``) on ``dataset.test`` (``gate.min_delta``, ``gate.max_class_drop``).

The recipes differ in how much each class counts (``training.class_weight``): a class of weight
1e-4 contributes next to nothing to the loss, so the model does not learn to predict it and its
recall is about 0. That makes the ordering of the models certain rather than a matter of
training noise: v1 ignores two of the four classes (test accuracy about 0.5), the weaker recipe
three (about 0.25), the better one none (about 0.95), and the last one a single class, one that
v1 knows (about 0.7 overall, that class's recall down from about 1 to 0). Measured with these
settings in-process: 0.49, 0.25, 0.94, 0.71.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from service.storage.s3 import S3ObjectStore
from tests.e2e.scenario import CLASSES, FINE_TUNE_DIGITS
from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.moto_server import MotoServer
from tests.helpers.processes import ApiClient, api_and_worker

pytestmark = pytest.mark.slow

MODELS, DATA, STATE = "refresh-models", "refresh-data", "refresh-state"
ALIAS = f"s3://{MODELS}/digits/production.json"
ALIAS_KEY = "digits/production.json"
#: The weight of a class a recipe ignores (the schema takes none at or below 0).
IGNORED = 1e-4
EPOCHS = 6


def _spec(version: str, *, ignore: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    """A head-only fine-tune of the base for the four digits; ``ignore`` counts next to nothing."""
    return {
        "name": f"digits-{version}",
        "base_model": {"uri": f"s3://{MODELS}/base/model.keras"},
        "dataset": {
            "train": f"s3://{DATA}/digits/train/",
            "test": f"s3://{DATA}/digits/holdout/",
            "validation_split": 0.2,
            "preprocessing": "rescale",
        },
        "head": {"cut_at": "gap", "hidden_units": [32]},
        "freeze": "base",
        "training": {
            "epochs": EPOCHS,
            "learning_rate": 0.03,
            "seed": 7,
            "class_weight": {name: IGNORED if name in ignore else 1.0 for name in CLASSES},
        },
        "output": {"uri": f"s3://{MODELS}/digits/{version}/"},
        "promote": {"alias_uri": ALIAS},
        **extra,
    }


def _finetune(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FINETUNE_URL", "FINETUNE_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_refresh_cycle(tmp_path: Path, moto_server: MotoServer) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for bucket in (MODELS, DATA, STATE):
        s3.create_bucket(Bucket=bucket)
    models, data = S3ObjectStore(s3, MODELS), S3ObjectStore(s3, DATA)
    # The base is an earlier generation trained on these digits, as a refresh's base is.
    pretrain_tiny_cnn(tmp_path / "base.keras", digits=FINE_TUNE_DIGITS, epochs=12, per_class=100)
    models.upload_file(tmp_path / "base.keras", "base/model.keras")
    for name, per_class, seed in (("train", 50, 1), ("holdout", 20, 99)):
        folder = write_image_folder(
            tmp_path / name, CLASSES, per_class=per_class, seed=seed, digits=FINE_TUNE_DIGITS
        )
        data.upload_dir(folder, f"digits/{name}/")

    def alias() -> dict[str, Any]:
        stored: dict[str, Any] = json.loads(models.get(ALIAS_KEY).data)
        return stored

    def published(version: str) -> list[str]:
        return [info.key for info in models.list(f"digits/{version}/")]

    env = {
        **moto_server.env,
        "FINETUNE_STATE_URI": f"s3://{STATE}/finetune",
        "FINETUNE_WORK_DIR": str(tmp_path / "work"),
    }
    compare = {"compare_with": {"alias_uri": ALIAS}}
    gate = {"metric": "test_accuracy", "min_delta": 0.0}  # no worse than the alias's model
    with api_and_worker(env, tmp_path, api_workers=1) as (url, api, worker):
        client = ApiClient(url)

        def run(spec: dict[str, Any]) -> dict[str, Any]:
            return client.wait(client.submit(spec)["id"], timeout=600, logs=(api, worker))

        # 1. v1 (knows two of the four classes) is trained and promoted.
        v1 = run(_spec("v1", ignore=CLASSES[:2]))
        assert v1["status"] == "succeeded", v1["error"]
        assert v1["result"]["promotion"]["version"] == 1
        assert alias()["target"]["job_id"] == v1["id"]
        assert alias()["target"]["keras_uri"] == v1["result"]["keras_uri"]
        v1_accuracy = v1["result"]["evaluation"]["metrics"]["accuracy"]
        assert 0.3 < v1_accuracy < 0.7, v1["result"]["evaluation"]

        # 2. A weaker recipe (three classes ignored) is refused by its gate.
        before = alias()
        weaker = run(
            _spec(
                "v2",
                ignore=CLASSES[:3],
                gate=gate,
                **compare,
            )
        )
        assert weaker["status"] == "failed"
        assert weaker["error"]["code"] == "gate_failed", weaker["error"]
        assert "accuracy" in weaker["error"]["message"]
        assert alias() == before, "the alias is unchanged"
        assert published("v2") == [], "nothing is published"

        # 3. A better recipe (every class counts) is promoted; the history holds v1.
        better = run(
            _spec(
                "v3",
                ignore=(),
                gate=gate,
                **compare,
            )
        )
        assert better["status"] == "succeeded", better["error"]
        comparison = better["result"]["comparison"]
        assert comparison["delta"]["accuracy"] > 0.1, comparison
        assert better["result"]["promotion"]["version"] == 2
        promoted = alias()
        assert promoted["target"]["job_id"] == better["id"]
        assert [state["target"]["job_id"] for state in promoted["history"]] == [v1["id"]]

        # 4. The CLI rolls the alias back to v1.
        shown = _finetune(url, "alias", "show", ALIAS)
        assert shown.returncode == 0 and better["id"] in shown.stdout, shown.stderr
        rolled = _finetune(url, "alias", "rollback", ALIAS)
        assert rolled.returncode == 0, rolled.stderr
        assert f"now points at {v1['id']} again" in rolled.stdout
        back = alias()
        assert back["target"] == before["target"] and back["version"] == 3
        assert back["change"] == {"action": "rollback", "restored_version": 1}

        # 5. Overall accuracy up on v1 (min_delta passes), but a class v1 knew is lost.
        dropped = run(
            _spec(
                "v5",
                ignore=(CLASSES[2],),
                gate={"metric": "test_accuracy", "min_delta": 0.0, "max_class_drop": 0.2},
                **compare,
            )
        )
        assert dropped["status"] == "failed"
        assert dropped["error"]["code"] == "gate_failed", dropped["error"]
        assert CLASSES[2] in dropped["error"]["message"], dropped["error"]
        assert alias() == back, "the alias is unchanged"
        assert published("v5") == []

    assert {info.key for info in models.list("digits/v1/")} >= {
        "digits/v1/manifest.json",
        "digits/v1/model.keras",
    }
