"""Benchmark 2: the input pipeline's images/s vs the training step's, fed from memory.

Measures, in one fresh process per round (rounds repeat; each row is the median):
- the training step alone: ``fit`` on in-memory arrays (MobileNetV2 alpha 0.35, 96x96, head
  only, batch 32): the rate the pipeline has to keep up with;
- the service's image-folder pipeline (service.trainer.data.load_image_datasets): epoch 1
  (read, parallel decode, fill the cache), epoch 2 (from the cache), and streamed (the cache
  budget exceeded: decoded again every epoch);
- TFRecord shards of the same images (tf.train.Example with ``image`` PNG bytes and ``label``)
  through the service's loader (``format: tfrecord``): epoch 1, epoch 2, streamed;
- whether a seeded pipeline gives the same order twice (deterministic parallel decode).

Usage: .venv/bin/python bench/input_pipeline.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
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

SHARDS = 8


def write_tfrecords(folder: Path, dest: Path) -> Path:
    """The image folder's files as ``SHARDS`` TFRecord shards of tf.train.Example."""
    marker = dest / ".complete"
    if marker.exists():
        return dest
    import tensorflow as tf

    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in folder.rglob("*.png"))
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    writers = [
        tf.io.TFRecordWriter(str(dest / f"train-{i:05d}-of-{SHARDS:05d}.tfrecord"))
        for i in range(SHARDS)
    ]
    for index, path in enumerate(files):
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    "image": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[path.read_bytes()])
                    ),
                    "label": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[classes.index(path.parent.name)])
                    ),
                }
            )
        )
        writers[index % SHARDS].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    marker.touch()
    return dest


def _rate(dataset: Any) -> tuple[float, list[int]]:
    started = time.perf_counter()
    count = 0
    labels: list[int] = []
    for _, y in dataset:
        count += int(y.shape[0])
        labels.extend(int(v) for v in y.numpy().argmax(-1)[:4])
    return count / (time.perf_counter() - started), labels


def one_round(root: str, size: int, per_class: int, batch: int) -> dict[str, Any]:
    """Every measurement once, in this process."""
    import keras

    from service.trainer import data as service_data

    folder, shards = Path(root) / "train", Path(root) / "tfrecords"
    out: dict[str, Any] = {}

    def pipeline(source: Path, data_format: str, budget_mb: float, seed: int = 1) -> Any:
        return service_data.load_image_datasets(
            source,
            None,
            image_shape=(size, size, 3),
            batch_size=batch,
            label_mode="categorical",
            validation_split=0,
            seed=seed,
            data_format=data_format,
            cache_mb=budget_mb,
        ).train

    deterministic = True
    for name, source, data_format in (
        ("folder", folder, "image_folder"),
        ("tfrecord", shards, "tfrecord"),
    ):
        cached = pipeline(source, data_format, 4096)
        out[f"{name}, epoch 1 (decode + fill cache)"] = _rate(cached)[0]
        out[f"{name}, epoch 2 (from cache)"] = _rate(cached)[0]
        out[f"{name}, streamed (over the cache budget)"] = _rate(pipeline(source, data_format, 0))[
            0
        ]
        first = _rate(pipeline(source, data_format, 0, seed=7))[1]
        again = _rate(pipeline(source, data_format, 0, seed=7))[1]
        deterministic = deterministic and first == again
    out["deterministic"] = deterministic

    images, labels = digit_arrays(CLASSES, per_class, size)
    base = keras.models.load_model(Path(root) / "base.keras")
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    x = keras.layers.Dense(128, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    y = keras.utils.to_categorical(labels, CLASSES)
    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.perf_counter()))
    model.fit(images.astype("float32"), y, batch_size=batch, epochs=3, verbose=0, callbacks=[timer])
    out["training step, fed from memory"] = len(images) * 2 / (ends[-1] - ends[0])
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes its section of bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="few images (a smoke run)")
    args = parser.parse_args(argv)
    size, per_class, batch = 96, (20 if args.quick else 100), 32
    root = WORK / f"pipeline-{size}-{per_class}"
    in_fresh_process(make_base_model, root / "base.keras", size, "mobilenet_v2")
    image_folder(root / "train", CLASSES, per_class, size)
    in_fresh_process(write_tfrecords, root / "train", root / "tfrecords")
    load_before = load_average()
    started = time.monotonic()
    rounds = []
    for index in range(args.repeats):
        rounds.append(in_fresh_process(one_round, str(root), size, per_class, batch))
        print(f"  round {index + 1}/{args.repeats}: {rounds[-1]} (load {load_average()})")
    save_raw("input_pipeline", {"rounds": rounds})
    step_key = "training step, fed from memory"
    rows = []
    for key, value in rounds[0].items():
        if not isinstance(value, float):
            continue
        values = [r[key] for r in rounds]
        ratios = [r[key] / r[step_key] for r in rounds]
        ratio = "1 (reference)" if key == step_key else ratio_summary(ratios)
        rows.append(f"| {key} | {median(values):.0f} | {ratio} |")
    deterministic = all(r["deterministic"] for r in rounds)
    minutes = (time.monotonic() - started) / 60
    quick = " --quick" if args.quick else ""
    body = f"""
Command: `{PYTHON} bench/input_pipeline.py --repeats {args.repeats}{quick}`
Machine: {machine()}. Run {stamp()}, {minutes:.0f} min, load average {load_before} before and
{load_average()} after.

{CLASSES * per_class} PNG images {size}x{size} of {CLASSES} classes, batch {batch}; the
pipelines alone (iterated without training) against the training step (MobileNetV2 alpha 0.35,
head only, `fit` on in-memory arrays). Ratio > 1: the pipeline delivers faster than the step
consumes, so with prefetch the step never waits for input. Median of {args.repeats} rounds; the
ratio's range is over rounds. TFRecord rows: the service's own loader (`format: tfrecord`,
the same images in {SHARDS} shards). Seeded streamed pipelines (folder and TFRecord) gave the
same order twice: {"yes" if deterministic else "NO"}.

| source | images/s | ratio to the training step |
|---|---|---|
{chr(10).join(rows)}
"""
    write_section(2, "Input pipeline", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
