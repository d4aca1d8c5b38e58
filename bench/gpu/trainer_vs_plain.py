"""The trainer's model-building and ``fit`` path vs the plain Keras recipe, under the JAX backend.

For the lent GPU machine, where TensorFlow cannot be installed (bench/gpu/README.md says how to
carry Keras there). Both sides run in this one process on the same in-memory data, alternating:
- service: ``model_surgery.build_model`` (raw-pixel input, rescaling, the base re-wired flat, a
  new head), ``freezing.Freezer``, ``compiling.compile_model`` (device-chosen XLA setting) and
  ``fitting.fit_phases`` (progress callback, per-epoch checkpoints written in the background)
  on an in-memory ``(images, labels)`` pair;
- plain: base CNN + GlobalAveragePooling + Dense(128) + Dense(N), Adam 1e-4, ``model.fit``
  on the same arrays.
Images/s over epochs 2..E. Pixels are fed as uint8 (cast to float32 on the device inside the
step; FACTS.md: 1.64x faster than feeding float32 on an H100) or float32 (``--feed float32``).
Data are random pixels and labels: the speed of a step does not depend on what it learns.

Runs on a CPU too (``--tiny``: a small CNN at 32x32), which is how it is tested here:
    KERAS_BACKEND=jax .venv/bin/python bench/gpu/trainer_vs_plain.py --tiny
On the device (see bench/gpu/README.md):
    python3 bench/gpu/trainer_vs_plain.py --models resnet50 mobilenet_v2 --precisions float32 \\
        mixed_bfloat16 --modes full head --out $OUT/gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keras
import numpy as np

from schemas import JobSpecSchema
from service.contract.messages import EpochEnded, ProgressMessage
from service.contract.plan import TrainingPlan
from service.trainer.devices import compile_settings
from service.trainer.fitting import fit_phases
from service.trainer.model_surgery import build_model

CLASSES = 10


@dataclass
class InMemoryData:
    """The in-memory form fit_phases accepts."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None = None


def make_base(name: str, size: int) -> keras.Model:
    """A base CNN with random weights (nothing is downloaded)."""
    shape = (size, size, 3)
    if name == "resnet50":
        return keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape)
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=shape)
    if name == "tiny":
        inputs = keras.Input(shape)
        x = inputs
        for filters in (16, 32, 64):
            x = keras.layers.Conv2D(filters, 3, padding="same")(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
            x = keras.layers.MaxPooling2D()(x)
        return keras.Model(inputs, x, name="tiny")
    raise ValueError(f"unknown model {name!r}")


def service_side(
    model: str, size: int, mode: str, data: InMemoryData, batch: int, epochs: int
) -> float:
    """The trainer's path; images/s over epochs 2..E."""
    plan = TrainingPlan.from_spec(
        JobSpecSchema().load(
            {
                "base_model": {"uri": "file:///bench/base.keras"},
                "dataset": {"train": "file:///bench/train/", "preprocessing": "rescale"},
                "output": {"uri": "file:///bench/out/"},
                "head": {"cut_at": -1, "pooling": "avg", "hidden_units": [128]},
                "freeze": "base" if mode == "head" else "none",
                "training": {
                    "epochs": epochs,
                    "batch_size": batch,
                    "optimizer": "adam",
                    "learning_rate": 1e-4,
                },
            }
        )
    )
    built = build_model(
        make_base(model, size),
        image_shape=(size, size, 3),
        preprocessing=plan.data.preprocessing,
        head=plan.head,
        num_classes=CLASSES,
        label_mode="categorical",
    )
    ends: list[float] = []

    def report(message: ProgressMessage) -> None:
        if isinstance(message, EpochEnded):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as checkpoints:
        fit_phases(built, data, plan, report, checkpoint_dir=checkpoints)
    return _rate(ends, len(data.train[0]))


def plain_side(
    model: str, size: int, mode: str, data: InMemoryData, batch: int, epochs: int
) -> float:
    """The classic recipe; images/s over epochs 2..E."""
    base = make_base(model, size)
    base.trainable = mode == "full"
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = base(x, training=None if mode == "full" else False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", dtype="float32")(x)
    net = keras.Model(inputs, outputs)
    net.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.perf_counter()))
    images, labels = data.train
    net.fit(images, labels, batch_size=batch, epochs=epochs, verbose=0, callbacks=[timer])
    return _rate(ends, len(images))


def _rate(ends: list[float], images: int) -> float:
    return images * (len(ends) - 1) / (ends[-1] - ends[0])


def main(argv: list[str] | None = None) -> int:
    """Runs every configuration, both sides alternating; prints a table, writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    parser.add_argument("--modes", nargs="+", default=["full", "head"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--feed", choices=("uint8", "float32"), default="uint8")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="small CNN, 32x32: a CPU smoke run")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    args = parser.parse_args(argv)
    if args.tiny:
        args.models, args.size, args.batch, args.steps = ["tiny"], 32, 32, 8
        args.precisions = ["float32"]
    import jax

    devices = [str(d) for d in jax.devices()]
    print(f"backend {keras.backend.backend()}, devices {devices}, settings {compile_settings()}")
    rng = np.random.default_rng(0)
    count = args.batch * args.steps
    images = rng.integers(0, 256, (count, args.size, args.size, 3), dtype=np.uint8)
    if args.feed == "float32":
        images = images.astype(np.float32)
    labels = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, count)]
    data = InMemoryData((images, labels))
    rows = []
    for model in args.models:
        for precision in args.precisions:
            keras.config.set_dtype_policy(precision)
            for mode in args.modes:
                results: dict[str, list[float]] = {"service": [], "plain": []}
                for round_index in range(args.repeats):
                    order = ["service", "plain"] if round_index % 2 == 0 else ["plain", "service"]
                    for side in order:
                        run = service_side if side == "service" else plain_side
                        rate = run(model, args.size, mode, data, args.batch, args.epochs)
                        results[side].append(rate)
                        keras.backend.clear_session()
                service, plain = np.median(results["service"]), np.median(results["plain"])
                rows.append(
                    {
                        "model": model,
                        "precision": precision,
                        "mode": mode,
                        "service": float(service),
                        "plain": float(plain),
                        "ratio": float(service / plain),
                        "runs": results,
                    }
                )
                print(
                    f"| {model} | {precision} | {mode} | {service:.0f} | {plain:.0f} | "
                    f"{service / plain:.2f} |",
                    flush=True,
                )
    keras.config.set_dtype_policy("float32")
    summary = {
        "devices": devices,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "jax": jax.__version__,
        "feed": args.feed,
        "size": args.size,
        "batch": args.batch,
        "images_per_epoch": count,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    print("| model | precision | fine-tune | service images/s | plain images/s | ratio |")
    for row in rows:
        print(
            f"| {row['model']} | {row['precision']} | {row['mode']} | {row['service']:.0f} | "
            f"{row['plain']:.0f} | {row['ratio']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
