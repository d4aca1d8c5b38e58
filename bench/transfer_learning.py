"""Does fine-tuning through the service beat training from scratch on a few examples?

A real transfer-learning check on real data that ships inside scikit-learn (``load_digits``:
1,797 handwritten 8x8 digits, upscaled to 32x32 grayscale):

1. pretrain a small CNN on the digits 5-9 (every image of them), as a client's base model;
2. for each seed, draw ``--per-class`` training images of each digit 0-4; every other image of
   0-4 is held out;
3. fine-tune the pretrained model THROUGH THE SERVICE (a job run by the worker, in-process, on
   local storage; the trainer in its spawned child as in production): a new head on the pooled
   features, phase 1 trains the head with the base frozen, phase 2 unfreezes everything at a
   tenth of the learning rate;
4. train the same network from scratch on the same images, also through the service (the base
   is the same architecture with random weights; nothing frozen; the same epochs in all);
5. score both exported SavedModels (``tf.saved_model.load``) on the held-out images.

Usage (the figures in bench/RESULTS.md)::

    python bench/transfer_learning.py --per-class 10 --seeds 5

Prints a Markdown table and writes the figures as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image

SIZE = 32
PRETRAIN_DIGITS = (5, 6, 7, 8, 9)
TARGET_DIGITS = (0, 1, 2, 3, 4)


def load_digits_32() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (n, 32, 32, 1) images (0-255) and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = (bunch.images * (255.0 / 16.0)).astype(np.uint8)
    big = np.stack(
        [
            np.asarray(Image.fromarray(img).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
            for img in small
        ]
    )
    return big[..., None], bunch.target.astype(np.int64)


def build_cnn(num_classes: int, seed: int) -> Any:
    """The network of both arms: three conv blocks with BatchNormalization, pooled features."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1), name="input")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    for block, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{block}")(x)
        # Momentum 0.9: with 50 images a run has ~100 steps, and the default 0.99 would leave
        # the from-scratch arm's moving statistics mostly at their initial values.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{block}")(x)
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        if block < 3:
            x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def pretrain(images: np.ndarray, labels: np.ndarray, path: Path, epochs: int) -> float:
    """Train on the digits 5-9 and save; returns the training accuracy of the last epoch."""
    import keras

    mask = np.isin(labels, PRETRAIN_DIGITS)
    x, y = images[mask].astype(np.float32), labels[mask] - min(PRETRAIN_DIGITS)
    model = build_cnn(len(PRETRAIN_DIGITS), seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    model.save(path)
    return float(history.history["accuracy"][-1])


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """One folder of PNGs per digit: ``root/digit0/...``."""
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"{index:05d}.png")
    return root


def run_job(services: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Queue a job and let an in-process worker run it; returns the finished job."""
    from schemas import JobSpecSchema
    from service.worker import Worker

    record = services.jobs.create(JobSpecSchema().load(spec))
    Worker(services).run_once()
    finished = services.jobs.get(record.id).public()
    if finished["status"] != "succeeded":
        raise RuntimeError(f"job {record.id} {finished['status']}: {finished['error']}")
    return dict(finished)


def held_out_accuracy(saved_model: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the exported SavedModel on raw pixels, as a client would serve it."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    scores = serve(image=tf.constant(images.astype(np.float32)))["output_0"].numpy()
    return float(np.mean(scores.argmax(axis=1) == labels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=10, help="training images per digit")
    parser.add_argument("--seeds", type=int, default=5, help="repeats with other draws")
    parser.add_argument("--head-epochs", type=int, default=15, help="phase 1 (base frozen)")
    parser.add_argument("--tune-epochs", type=int, default=15, help="phase 2 (all trainable)")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    from service.config import Config
    from service.context import build_services

    started = time.time()
    images, labels = load_digits_32()
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    base = work / "pretrained" / "model.keras"
    base.parent.mkdir(parents=True)
    pretrain_accuracy = pretrain(images, labels, base, args.pretrain_epochs)
    services = build_services(
        Config(
            state_uri=f"file://{work / 'state'}",
            work_dir=work / "scratch",
            allow_local_storage=True,
            heartbeat_seconds=2.0,
        )
    )
    target = np.flatnonzero(np.isin(labels, TARGET_DIGITS))
    epochs = args.head_epochs + args.tune_epochs
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        chosen = np.concatenate(
            [
                rng.choice(target[labels[target] == digit], args.per_class, replace=False)
                for digit in TARGET_DIGITS
            ]
        )
        held_out = np.setdiff1d(target, chosen)
        train_dir = write_folder(work / f"seed{seed}" / "train", images[chosen], labels[chosen])
        scratch_base = work / f"seed{seed}" / "scratch_base.keras"
        build_cnn(len(PRETRAIN_DIGITS), seed=1000 + seed).save(scratch_base)
        common = {
            "dataset": {"train": f"file://{train_dir}/", "validation_split": 0},
            "head": {"cut_at": "gap", "dropout": 0.2},
            "training": {
                "batch_size": 16,
                "learning_rate": args.learning_rate,
                "seed": seed,
                "augmentation": None,
            },
        }
        arms = {
            "fine-tuned": {
                **common,
                "base_model": {"uri": f"file://{base}"},
                "schedule": [
                    {"epochs": args.head_epochs, "freeze": "base"},
                    {
                        "epochs": args.tune_epochs,
                        "learning_rate": args.learning_rate / 10,
                        "freeze": "none",
                    },
                ],
            },
            "from scratch": {
                **common,
                "base_model": {"uri": f"file://{scratch_base}"},
                "freeze": "none",
                "training": {**common["training"], "epochs": epochs},
            },
        }
        row: dict[str, Any] = {"seed": seed, "held_out": len(held_out)}
        for arm, spec in arms.items():
            out = work / f"seed{seed}" / arm.replace(" ", "_")
            job = run_job(services, {**spec, "output": {"uri": f"file://{out}/"}})
            row[arm] = held_out_accuracy(out / "saved_model", images[held_out], labels[held_out])
            row[f"{arm} train accuracy"] = job["result"]["metrics"].get("accuracy")
        rows.append(row)
        print(
            f"seed {seed}: fine-tuned {row['fine-tuned']:.3f}, "
            f"from scratch {row['from scratch']:.3f} ({len(held_out)} held out); training "
            f"accuracy {row['fine-tuned train accuracy']:.3f} / "
            f"{row['from scratch train accuracy']:.3f}",
            flush=True,
        )

    summary = {
        arm: {
            "mean": statistics.mean(r[arm] for r in rows),
            "stdev": statistics.stdev(r[arm] for r in rows) if len(rows) > 1 else 0.0,
        }
        for arm in ("fine-tuned", "from scratch")
    }
    figures = {
        "per_class": args.per_class,
        "seeds": args.seeds,
        "epochs": {"head": args.head_epochs, "tune": args.tune_epochs, "scratch": epochs},
        "pretrain_train_accuracy": pretrain_accuracy,
        "rows": rows,
        "summary": summary,
        "seconds": round(time.time() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
    }
    print()
    print("| seed | fine-tuned | from scratch |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['fine-tuned']:.3f} | {r['from scratch']:.3f} |")
    print(
        f"| mean ± sd | {summary['fine-tuned']['mean']:.3f} ± {summary['fine-tuned']['stdev']:.3f}"
        f" | {summary['from scratch']['mean']:.3f} ± {summary['from scratch']['stdev']:.3f} |"
    )
    print(f"\n{figures['seconds']} s in all; pretraining accuracy {pretrain_accuracy:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
