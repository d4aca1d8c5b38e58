"""Benchmark 7: the trainer's fit path vs the plain script, alternating inside one process.

Benchmark 1 runs every measurement in a fresh process, as jobs run, but on this CPU a fresh
process lands at one of two speeds (FACTS.md), so its ratios scatter. Here both sides live in
one process and alternate fit calls, which removes that: the service side is the trainer's own
path (load_base_model, the image-folder pipeline with its cache, build_model, Freezer,
compile_model, and the callbacks a job runs: checkpoint after every epoch written in the
background, progress, TensorBoard); the plain side is the classic recipe on in-memory float32
arrays. Same base model file and images as benchmark 1. Images/s over epochs 2..E of each fit.

Usage: .venv/bin/python bench/fit_in_process.py [--rounds 4] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
    WORK,
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
from bench.training_throughput import CLASSES, make_base_model


def paired(
    base_path: str, train_dir: str, per_class: int, size: int, mode: str, rounds: int, epochs: int
) -> dict[str, list[float]]:
    """Both sides built once in this process, then ``rounds`` alternating fits of each."""
    import keras

    from schemas import JobSpecSchema
    from service.contract.plan import FreezeRule, TrainingPlan
    from service.trainer.callbacks import ProgressCallback, tensorboard_callback
    from service.trainer.checkpointing import CheckpointCallback
    from service.trainer.compiling import compile_model
    from service.trainer.data import load_image_datasets
    from service.trainer.freezing import Freezer
    from service.trainer.loading import load_base_model
    from service.trainer.model_surgery import build_model
    from service.trainer.reporting import BackgroundReporter

    # The classic recipe's settings, read from a spec as a job reads them (the schema's defaults).
    plan = TrainingPlan.from_spec(
        JobSpecSchema().load(
            {
                "base_model": {"uri": "s3://bench/base.keras"},
                "dataset": {"train": "s3://bench/train/"},
                "output": {"uri": "s3://bench/out/"},
                "head": {"cut_at": -1, "hidden_units": [128]},
                "training": {"learning_rate": 1e-4},
            }
        )
    )
    shape = (size, size, 3)
    data = load_image_datasets(
        train_dir,
        None,
        image_shape=shape,
        batch_size=32,
        label_mode="categorical",
        validation_split=0,
        seed=1,
    )
    built = build_model(
        load_base_model(base_path, "auto"),
        image_shape=shape,
        preprocessing="rescale",
        head=plan.head,
        num_classes=CLASSES,
        label_mode="categorical",
    )
    Freezer(built).apply(FreezeRule("base" if mode == "head" else "none", None), "freeze")
    compile_model(built.model, plan.training, plan.phases[0].learning_rate)

    images, labels = digit_arrays(CLASSES, per_class, size)
    x, y = images.astype("float32"), keras.utils.to_categorical(labels, CLASSES)
    base = keras.models.load_model(base_path)
    base.trainable = mode == "full"
    inputs = keras.Input(shape)
    features = keras.layers.Rescaling(1.0 / 255)(inputs)
    features = base(features, training=None if mode == "full" else False)
    features = keras.layers.GlobalAveragePooling2D()(features)
    features = keras.layers.Dense(128, activation="relu")(features)
    plain = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(features))
    plain.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    scratch = tempfile.mkdtemp(prefix="perf-bench-inproc-")

    def service_fit() -> float:
        ends: list[float] = []
        reporter = BackgroundReporter(lambda message: None)
        history: list[dict[str, Any]] = []
        callbacks = [
            CheckpointCallback(
                f"{scratch}/ckpt", 0, 0, history, reporter.direct_report, writer=reporter
            ),
            ProgressCallback(reporter.report, 0, epochs, history),
            tensorboard_callback(scratch),
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda *_: ends.append(time.perf_counter())
            ),
        ]
        built.model.fit(data.train, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
        reporter.close()
        return len(x) * (len(ends) - 1) / (ends[-1] - ends[0])

    def plain_fit() -> float:
        ends: list[float] = []
        timer = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda *_: ends.append(time.perf_counter())
        )
        plain.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[timer])
        return len(x) * (len(ends) - 1) / (ends[-1] - ends[0])

    results: dict[str, list[float]] = {"service": [], "plain": []}
    for round_index in range(rounds):
        order = [("service", service_fit), ("plain", plain_fit)]
        for side, fit in order if round_index % 2 == 0 else list(reversed(order)):
            results[side].append(fit())
            print(f"  {mode} round {round_index + 1}/{rounds} {side}: {results[side][-1]:.0f}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes its section of bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny CNN, few images")
    args = parser.parse_args(argv)
    model, size, per_class = ("tiny_cnn", 32, 20) if args.quick else ("mobilenet_v2", 96, 100)
    rounds = 2 if args.quick else args.rounds
    root = WORK / f"throughput-{model}-{size}-{per_class}"
    base_path = in_fresh_process(make_base_model, root / "base.keras", size, model)
    train_dir = image_folder(root / "train", CLASSES, per_class, size)
    load_before = load_average()
    started = time.monotonic()
    raw: dict[str, Any] = {}
    rows = []
    for mode, epochs in (("head", 4), ("full", 3)):
        results = in_fresh_process(
            paired, str(base_path), str(train_dir), per_class, size, mode, rounds, epochs
        )
        ratios = [s / p for s, p in zip(results["service"], results["plain"], strict=True)]
        raw[mode] = {**results, "ratios": ratios}
        rows.append(
            f"| {mode} | {median(results['service']):.0f} | {median(results['plain']):.0f} | "
            f"{ratio_summary(ratios)} |"
        )
    save_raw("fit_in_process", raw)
    minutes = (time.monotonic() - started) / 60
    quick = " --quick" if args.quick else f" --rounds {rounds}"
    body = f"""
Command: `{PYTHON} bench/fit_in_process.py{quick}`
Machine: {machine()}. Run {stamp()}, {minutes:.0f} min, load average {load_before} before and
{load_average()} after.

The same comparison as benchmark 1 ({model.replace("_", "")}, {size}x{size},
{CLASSES * per_class} images, batch 32, Adam 1e-4), with both sides in one process and their
fit calls alternating, {rounds} rounds; each fit's images/s over its epochs 2..E. Service: the
trainer's pipeline, model, compile settings and job callbacks (checkpoints, progress,
TensorBoard); plain: the classic recipe on in-memory arrays.

| fine-tune | service images/s | plain images/s | service / plain |
|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section(7, "Training throughput in one process: trainer fit path vs plain fit", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
