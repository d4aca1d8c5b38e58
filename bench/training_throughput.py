"""Benchmark 1: training throughput of a service job vs the plain Keras script, same model and data.

The plain script is the classic recipe: base CNN + GlobalAveragePooling + Dense(128) + Dense(N),
Adam 1e-4, ``model.fit`` on in-memory float32 arrays. The service side is a real job's trainer:
``service.worker.child_runner.run_training`` (the child process, the image-folder pipeline,
per-epoch checkpoints, progress messages and TensorBoard), timed by the arrival of its epoch
messages. Both train the same base model file on the same images (the folder holds exactly the
arrays' pixels as PNG), without validation; throughput is images/s over epochs 2..E (epoch 1 pays
for tracing). Each measurement runs in a fresh process; service and plain alternate.

A second table measures the compile choices on this CPU for the plain script (float32 vs
mixed_bfloat16 vs XLA), the measurement behind service/trainer/devices.py.

Usage: .venv/bin/python bench/training_throughput.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
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
    write_section,
)

CLASSES = 10


def make_base_model(path: Path, size: int, model: str) -> Path:
    """A base model file: MobileNetV2 alpha 0.35 (random weights, no download) or the tiny CNN."""
    if path.exists():
        return path
    import keras

    keras.utils.set_random_seed(0)
    if model == "mobilenet_v2":
        base = keras.applications.MobileNetV2(
            input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=None
        )
    else:
        from tests.helpers.models import build_tiny_cnn

        full = build_tiny_cnn((size, size, 3), num_classes=5)
        base = keras.Model(full.inputs, full.get_layer("relu3").output, name="tiny_base")
    path.parent.mkdir(parents=True, exist_ok=True)
    base.save(path)
    return path


def plain_script(
    base_path: str,
    per_class: int,
    size: int,
    epochs: int,
    mode: str,
    batch_size: int,
    variant: str = "float32",
) -> dict[str, Any]:
    """The classic recipe in this process; returns images/s over epochs 2..E."""
    import keras
    import numpy as np

    if variant == "mixed_bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
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
        optimizer=keras.optimizers.Adam(1e-4),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=variant == "xla",
        steps_per_execution=16 if variant == "steps_per_execution_16" else 1,
    )
    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.perf_counter()))
    model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer]
    )
    n = int(np.size(labels))
    return {"images_per_s": _throughput(ends, n), "epoch_ends": ends, "n": n}


def service_job(
    base_path: str, train_dir: str, epochs: int, mode: str, batch_size: int, seed: int | None
) -> dict[str, Any]:
    """A real job's trainer (spawned child, pipeline, checkpoints); images/s over epochs 2..E."""
    from service.contract.messages import EpochEnded, Info, ProgressMessage
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
            "seed": seed,
        },
    )
    ends: list[float] = []
    info: dict[str, Any] = {}

    def on_message(message: ProgressMessage) -> None:
        if isinstance(message, EpochEnded):
            ends.append(time.perf_counter())
        if isinstance(message, Info) and "train_counts" in message.data:
            info["n"] = sum(message.data["train_counts"].values())

    with tempfile.TemporaryDirectory(prefix="perf-bench-job-") as scratch:
        request = TrainingRequest(
            job_id="ftj_bench",
            spec=spec,
            base_model_path=base_path,
            train_path=train_dir,
            validation_path=None,
            output_dir=str(Path(scratch) / "out"),
            checkpoint_dir=str(Path(scratch) / "checkpoints"),
        )
        run_training(request, on_message, lambda: None)
    return {"images_per_s": _throughput(ends, info["n"]), "epoch_ends": ends, "n": info["n"]}


def _throughput(ends: list[float], images: int) -> float:
    if len(ends) < 2:
        raise RuntimeError("need at least 2 epochs to time epochs 2..E")
    return images * (len(ends) - 1) / (ends[-1] - ends[0])


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes its section of bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny CNN, few images (a smoke run)")
    parser.add_argument("--skip-choices", action="store_true", help="skip the bf16/XLA table")
    args = parser.parse_args(argv)

    model, size, per_class = ("tiny_cnn", 32, 20) if args.quick else ("mobilenet_v2", 96, 100)
    batch = 32
    root = WORK / f"throughput-{model}-{size}-{per_class}"
    base_path = in_fresh_process(make_base_model, root / "base.keras", size, model)
    train_dir = image_folder(root / "train", CLASSES, per_class, size)
    n = CLASSES * per_class
    load_before = load_average()
    started = time.monotonic()
    raw: dict[str, Any] = {}
    rows = []
    for mode, epochs in (("head", 2 if args.quick else 5), ("full", 2 if args.quick else 3)):
        print(f"{model} {size}x{size}, {mode} fine-tune, {n} images, {epochs} epochs")
        results = alternate(
            {
                "service": lambda mode=mode, epochs=epochs: in_fresh_process(
                    service_job, str(base_path), str(train_dir), epochs, mode, batch, None
                )["images_per_s"],
                "plain": lambda mode=mode, epochs=epochs: in_fresh_process(
                    plain_script, str(base_path), per_class, size, epochs, mode, batch
                )["images_per_s"],
            },
            args.repeats,
        )
        ratios = [s / p for s, p in zip(results["service"], results["plain"], strict=True)]
        raw[mode] = {**results, "ratios": ratios}
        rows.append(
            f"| {mode} | {median(results['service']):.0f} | {median(results['plain']):.0f} | "
            f"{ratio_summary(ratios)} |"
        )
    choice_rows = []
    choices_note = ""
    if args.skip_choices and (WORK / "training_choices.json").exists():
        kept = json.loads((WORK / "training_choices.json").read_text())
        choice_rows, choices_note = kept["rows"], f" (kept from the run of {kept['stamp']})"
    elif not args.skip_choices:
        print("compile choices on this CPU (plain script, head only)")
        variants = ("float32", "mixed_bfloat16", "xla", "steps_per_execution_16")
        results = alternate(
            {
                variant: lambda variant=variant: in_fresh_process(
                    plain_script, str(base_path), per_class, size, 3, "head", batch, variant
                )["images_per_s"]
                for variant in variants
            },
            max(2, args.repeats - 1),
        )
        raw["choices"] = results
        for variant in variants:
            ratios = [v / f for v, f in zip(results[variant], results["float32"], strict=True)]
            choice_rows.append(
                f"| {variant} | {median(results[variant]):.0f} | {ratio_summary(ratios)} |"
            )
        save_raw("training_choices", {"rows": choice_rows, "stamp": stamp()})
    minutes = (time.monotonic() - started) / 60
    save_raw("training_throughput", raw)
    quick = (" --quick" if args.quick else "") + (" --skip-choices" if args.skip_choices else "")
    body = f"""
Command: `{PYTHON} bench/training_throughput.py --repeats {args.repeats}{quick}`
Machine: {machine()}. Run {stamp()}, {minutes:.0f} min, load average {load_before} before and
{load_average()} after (the benchmark's own processes count in the load).

{model.replace("_", "")} {"alpha 0.35, random weights, " if model == "mobilenet_v2" else ""}\
{size}x{size}, {n} images of {CLASSES} classes, batch {batch}, Adam 1e-4, no validation;
images/s over epochs 2..E; the service side is a real job's trainer child (tf.data image-folder
pipeline, checkpoint after every epoch, TensorBoard, progress messages), the plain side `fit` on
in-memory float32 arrays. Ratio = service / plain of paired runs (median, range, pairs).

| fine-tune | service images/s | plain images/s | service / plain |
|---|---|---|---|
{chr(10).join(rows)}

Compile choices on this CPU{choices_note} (plain script, head only; ratio to float32 without
XLA of the same round; `--skip-choices` keeps the last table). XLA is why the trainer compiles
without XLA on a CPU (devices.py). `steps_per_execution_16` (16 steps per call of the compiled
function, Python once per group) is not a clear gain where a step takes tens of milliseconds
(1.01, n=2, in the run before this one; the trainer with it, bench/fit_in_process.py: 1.05 head
only and 0.73 full against 0.88 and 1.00 without), so the trainer keeps Keras's default of 1. The
`mixed_bfloat16` row sets the global policy before loading the base, which keeps the float32
policy stored with its layers: only the new head computes in bf16, so any difference in that
row is the two speeds a fresh process lands at on this CPU (FACTS.md), not bf16 arithmetic;
`training.mixed_precision: auto` trains float32 on a CPU (precision.py):

| variant | images/s | ratio to float32 |
|---|---|---|
{chr(10).join(choice_rows) if choice_rows else "| (skipped) | | |"}
"""
    write_section(1, "Training throughput: service job vs plain Keras script", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
