"""Benchmark: the feature cache. A service job's training vs the plain script, and the README job.

1. The classic recipe, head only, 10 epochs: MobileNetV2 alpha 0.35 at 96x96 (random weights, no
   download), 1,200 digit images (10 classes), batch 32. The plain script loads the base, puts
   GlobalAveragePooling + Dense(128) + Dense(10) on it, freezes the base and fits on in-memory
   float32 arrays; it is timed from just before ``fit`` to its last epoch's end. The service side
   is a real job's trainer (spawned child, image-folder pipeline, checkpoints every epoch,
   TensorBoard), timed from its ``training`` phase message to its last epoch message: the
   feature cache's computing is inside that time. ``training.feature_cache: off`` runs as a
   third side. The sides alternate, each run in a fresh process.
2. The same with the whole model trainable (full fine-tune, fewer epochs): no prefix to cache,
   so this checks that the cache's machinery costs nothing there.
3. The README walk-through's job (examples/make_digits_example.py's model and digits, its spec),
   the trainer child's wall time from request to outcome, feature_cache auto vs off.
4. The uint8 feed: the whole model trained (full fine-tune) on the service's image pipeline,
   fed float32 pixels converted in tf.data vs uint8 pixels cast inside the model
   (fitting.casting_on_device); images/s over epochs 2..E, one fresh process each.
5. The feature cache's inference pass: the base's forward pass over 1,200 uint8 images in batches
   of 32, 64, 128 and 256, in turn in one fresh process per repeat.

Usage: .venv/bin/python bench/feature_cache.py [--repeats 3] [--full-epochs 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO,
    WORK,
    alternate,
    digit_arrays,
    image_folder,
    in_fresh_process,
    load_average,
    machine,
    median,
    ratio_summary,
    save_raw,
    stamp,
)
from bench.training_throughput import make_base_model

CLASSES = 10
SECTION = "## Feature cache: a frozen prefix computed once"


def plain_fit_seconds(
    base_path: str, per_class: int, size: int, epochs: int, mode: str, batch_size: int
) -> float:
    """The plain script: load, head, freeze, ``fit`` on arrays; seconds from fit to its end."""
    import keras

    images, labels = digit_arrays(CLASSES, per_class, size)
    x = images.astype("float32")
    y = keras.utils.to_categorical(labels, CLASSES)
    base = keras.models.load_model(base_path)
    base.trainable = mode == "full"
    inputs = keras.Input((size, size, 3))
    features = keras.layers.Rescaling(1.0 / 255)(inputs)
    features = base(features, training=None if mode == "full" else False)
    features = keras.layers.GlobalAveragePooling2D()(features)
    features = keras.layers.Dense(128, activation="relu")(features)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", dtype="float32")(features)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.perf_counter()))
    started = time.perf_counter()
    model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer]
    )
    return ends[-1] - started


def service_training_seconds(
    base_path: str, train_dir: str, epochs: int, mode: str, batch_size: int, feature_cache: str
) -> dict[str, Any]:
    """A real job's trainer: seconds from its training phase message to its last epoch message."""
    from service.contract.messages import EpochEnded, Info, PhaseStarted, ProgressMessage
    from service.contract.request import TrainingRequest
    from service.worker.child_runner import run_training
    from tests.helpers.specs import loaded_spec

    spec = loaded_spec(
        dataset={"train": "s3://bench/train/", "preprocessing": "rescale", "validation_split": 0},
        head={"cut_at": -1, "pooling": "avg", "hidden_units": [128], "dropout": 0},
        freeze="base" if mode == "head" else "none",
        training={
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "adam",
            "learning_rate": 1e-4,
            "feature_cache": feature_cache,
        },
    )
    marks: dict[str, float] = {}
    cache: dict[str, Any] = {}

    def on_message(message: ProgressMessage) -> None:
        if isinstance(message, PhaseStarted) and message.phase == "training":
            marks["training"] = time.perf_counter()
        if isinstance(message, EpochEnded):
            marks["last_epoch"] = time.perf_counter()
        if isinstance(message, Info) and "feature_cache" in message.data:
            cache.update(message.data["feature_cache"])

    with tempfile.TemporaryDirectory(prefix="perf-bench-job-") as scratch:
        request = TrainingRequest(
            job_id="ftj_bench",
            spec=spec,
            base_model_path=base_path,
            train_path=train_dir,
            validation_path=None,
            output_dir=str(Path(scratch) / "out"),
            checkpoint_dir=str(Path(scratch) / "checkpoints"),
            scratch_dir=str(Path(scratch) / "scratch"),
        )
        run_training(request, on_message, lambda: None)
    return {"seconds": marks["last_epoch"] - marks["training"], "cache": cache}


def readme_job_seconds(example: str, feature_cache: str) -> dict[str, Any]:
    """The README walk-through's job in a trainer child: wall seconds from request to outcome."""
    from service.contract.messages import Info, ProgressMessage
    from service.contract.request import TrainingRequest
    from service.worker.child_runner import run_training
    from tests.helpers.specs import loaded_spec

    spec = loaded_spec(
        dataset={
            "train": "s3://bench/digits/train/",
            "validation_split": 0.2,
            "preprocessing": "rescale",
        },
        head={"cut_at": "gap", "hidden_units": [32]},
        freeze={"first_n": 5},
        training={"epochs": 8, "learning_rate": 0.003, "seed": 1, "feature_cache": feature_cache},
    )
    cache: dict[str, Any] = {}

    def on_message(message: ProgressMessage) -> None:
        if isinstance(message, Info) and "feature_cache" in message.data:
            cache.update(message.data["feature_cache"])

    with tempfile.TemporaryDirectory(prefix="perf-bench-readme-") as scratch:
        request = TrainingRequest(
            job_id="ftj_bench_readme",
            spec=spec,
            base_model_path=f"{example}/base/model.keras",
            train_path=f"{example}/digits/train",
            validation_path=None,
            output_dir=str(Path(scratch) / "out"),
            checkpoint_dir=str(Path(scratch) / "checkpoints"),
            scratch_dir=str(Path(scratch) / "scratch"),
        )
        started = time.perf_counter()
        outcome = run_training(request, on_message, lambda: None)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "cache": cache, "val_accuracy": outcome.metrics.get("val_accuracy")}


def inference_pass_seconds(base_path: str, size: int, batch_sizes: list[int]) -> dict[int, float]:
    """The base's forward pass over 1,200 uint8 images in batches of each size, in turn (after
    one warm-up trace): what features.INFERENCE_BATCH_PIXELS was chosen from."""
    import keras
    import numpy as np
    import tensorflow as tf

    base = keras.saving.load_model(base_path)
    base.trainable = False
    prefix = keras.Model(base.inputs, keras.layers.GlobalAveragePooling2D()(base.outputs[0]))
    images = np.random.default_rng(0).integers(0, 256, (1200, size, size, 3), dtype=np.uint8)
    signature = [tf.TensorSpec((None, size, size, 3), tf.uint8)]

    @tf.function(input_signature=signature)  # type: ignore[untyped-decorator]
    def run(batch: tf.Tensor) -> tf.Tensor:
        return prefix(tf.cast(batch, tf.float32), training=False)

    run(images[:2])
    seconds = {}
    for batch_size in batch_sizes:
        started = time.perf_counter()
        for start in range(0, len(images), batch_size):
            run(images[start : start + batch_size]).numpy()
        seconds[batch_size] = time.perf_counter() - started
    return seconds


def feed_images_per_s(
    base_path: str, train_dir: str, size: int, epochs: int, batch_size: int, feed: str
) -> float:
    """Full fine-tune on the service's pipeline, fed ``float32`` or ``uint8``; images/s."""
    import keras

    from service.contract.plan import FreezeRule
    from service.trainer.data import image_datasets, read_dataset
    from service.trainer.fitting import casting_on_device
    from service.trainer.freezing import Freezer
    from service.trainer.model_surgery import build_model
    from tests.helpers.plans import head_settings

    examples = read_dataset(train_dir, "image_folder", "train")
    data = image_datasets(
        examples,
        None,
        image_shape=(size, size, 3),
        batch_size=batch_size,
        label_mode="categorical",
        seed=0,
    )
    built = build_model(
        keras.models.load_model(base_path),
        image_shape=(size, size, 3),
        preprocessing="rescale",
        head=head_settings(cut_at=-1, hidden_units=[128], dropout=0),
        num_classes=CLASSES,
        label_mode="categorical",
    )
    Freezer(built).apply(FreezeRule("none", None))
    model, train = built.model, data.train
    if feed == "uint8":
        model, train = casting_on_device(built.model), data.uint8_train
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.perf_counter()))
    model.fit(train, epochs=epochs, verbose=0, callbacks=[timer])
    return len(examples) * (len(ends) - 1) / (ends[-1] - ends[0])


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark, prints its figures and keeps them as JSON under the work dir."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--head-epochs", type=int, default=10)
    parser.add_argument("--full-epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny CNN, few images (a smoke run)")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["head", "full", "readme", "uint8", "inference"]
    )
    args = parser.parse_args(argv)

    model, size, per_class = ("tiny_cnn", 32, 20) if args.quick else ("mobilenet_v2", 96, 120)
    batch = 32
    root = WORK / f"feature-cache-{model}-{size}-{per_class}"
    base_path = str(in_fresh_process(make_base_model, root / "base.keras", size, model))
    train_dir = str(image_folder(root / "train", CLASSES, per_class, size))
    loads = [load_average()]
    started = stamp()
    raw: dict[str, Any] = {"machine": machine(), "started": started}
    lines = [f"{model} {size}x{size}, {CLASSES * per_class} images, batch {batch}; {started}"]
    for mode, epochs in (("head", args.head_epochs), ("full", args.full_epochs)):
        if mode in args.skip:
            continue
        caches: list[dict[str, Any]] = []

        def service(
            cache: str, mode: str = mode, epochs: int = epochs, caches: list[Any] = caches
        ) -> float:
            result = in_fresh_process(
                service_training_seconds, base_path, train_dir, epochs, mode, batch, cache
            )
            caches.append(result["cache"])
            return float(result["seconds"])

        results = alternate(
            {
                "plain": lambda mode=mode, epochs=epochs: in_fresh_process(
                    plain_fit_seconds, base_path, per_class, size, epochs, mode, batch
                ),
                "service": lambda: service("auto"),
                "service_off": lambda: service("off"),
            },
            args.repeats,
        )
        loads.append(load_average())
        speedups = [p / s for p, s in zip(results["plain"], results["service"], strict=True)]
        off = [p / s for p, s in zip(results["plain"], results["service_off"], strict=True)]
        raw[mode] = {**results, "plain_over_service": speedups, "caches": caches}
        lines.append(
            f"{mode}, {epochs} epochs: plain {median(results['plain']):.1f} s, service "
            f"{median(results['service']):.1f} s, service off {median(results['service_off']):.1f}"
            f" s; plain/service {ratio_summary(speedups)}, plain/service-off {ratio_summary(off)}"
        )
        print(lines[-1], flush=True)
    if "readme" not in args.skip:
        example = root / "example"
        if not (example / "base" / "model.keras").exists():
            subprocess.run(
                [sys.executable, "examples/make_digits_example.py", str(example)],
                cwd=REPO,
                check=True,
            )
        readme: dict[str, list[Any]] = {"auto": [], "off": []}
        timings = alternate(
            {
                name: lambda name=name: _kept(
                    readme[name], in_fresh_process(readme_job_seconds, str(example), name)
                )
                for name in ("auto", "off")
            },
            args.repeats,
        )
        ratios = [o / a for o, a in zip(timings["off"], timings["auto"], strict=True)]
        raw["readme"] = {**timings, "details": readme, "off_over_auto": ratios}
        lines.append(
            f"README job (trainer child, request to outcome): auto {median(timings['auto']):.1f} s"
            f", off {median(timings['off']):.1f} s; off/auto {ratio_summary(ratios)}; cache "
            f"events {readme['auto'][0]['cache'] or 'none'}"
        )
        print(lines[-1], flush=True)
    if "uint8" not in args.skip:
        feeds = alternate(
            {
                feed: lambda feed=feed: in_fresh_process(
                    feed_images_per_s, base_path, train_dir, size, 3, batch, feed
                )
                for feed in ("float32", "uint8")
            },
            args.repeats,
        )
        ratios = [u / f for u, f in zip(feeds["uint8"], feeds["float32"], strict=True)]
        raw["uint8"] = {**feeds, "uint8_over_float32": ratios}
        lines.append(
            f"feed, full fine-tune: float32 {median(feeds['float32']):.0f} images/s, uint8 "
            f"{median(feeds['uint8']):.0f} images/s; uint8/float32 {ratio_summary(ratios)}"
        )
        print(lines[-1], flush=True)
    if "inference" not in args.skip:
        sizes = [32, 64, 128, 256]
        passes = [
            in_fresh_process(inference_pass_seconds, base_path, size, sizes)
            for _ in range(args.repeats)
        ]
        raw["inference"] = passes
        lines.append(
            "inference pass, 1,200 images: "
            + ", ".join(f"batch {b} {median([p[b] for p in passes]):.2f} s" for b in sizes)
            + f" (n={len(passes)}; 128/32 "
            + ratio_summary([p[32] / p[128] for p in passes])
            + ")"
        )
        print(lines[-1], flush=True)
    loads.append(load_average())
    raw["load_averages"] = loads
    lines.append(f"1-minute load averages through the run: {', '.join(loads)}; {machine()}")
    path = save_raw("feature_cache" + "".join(f"-no-{name}" for name in args.skip), raw)
    print("\n".join(lines))
    print(f"raw: {path}")
    print(json.dumps({"section": SECTION}))
    return 0


def _kept(store: list[Any], result: dict[str, Any]) -> float:
    store.append(result)
    return float(result["seconds"])


if __name__ == "__main__":
    sys.exit(main())
