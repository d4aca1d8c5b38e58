"""Which ``keras.applications`` architectures the service fine-tunes: the compatibility table.

For each allowed architecture (service.contract.architectures): build it with ``weights=None``,
``include_top=False`` at its smallest input size, save it as ``.keras`` (the file a user has) and
take it through the service's trainer, stage by stage:

- load: the service's loader (safe mode, the stored config checked) opens the file;
- freeze: the dry run (inspection.inspect) builds the model with a new head and applies both
  phases' freeze rules (phase 1 ``base``, phase 2 ``first_n`` half of the base's layers);
- fit: the job (run.train) fits one epoch per phase on 8 images of 2 classes;
- export: it writes the SavedModel and ``model.keras``, and the SavedModel scores a batch.

Each stage is ``ok`` or the first line of what went wrong. Usage::

    nice python bench/compat_table.py --markdown docs/MODELS.md          # every architecture
    nice python bench/compat_table.py --only MobileNetV2 VGG16           # some

``--markdown`` rewrites the table (and its command and date) in that file between the markers
``<!-- compat-table -->`` and ``<!-- /compat-table -->``; without it the table is printed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np
from PIL import Image

from schemas import JobSpecSchema
from service.contract.architectures import ARCHITECTURES
from service.contract.messages import ChildMessage, PhaseStarted
from service.contract.request import TrainingRequest
from service.trainer.inspection import inspect
from service.trainer.loading import load_base_model
from service.trainer.run import train

#: keras.applications' smallest input side where it is not 32.
MIN_SIZES = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}
DEFAULT_MIN_SIZE = 32
STAGES = ("load", "freeze", "fit", "export")
BEGIN, END = "<!-- compat-table -->", "<!-- /compat-table -->"
OK = "ok"


@dataclass
class Row:
    """One architecture's result: each stage ``ok``, a reason, or ``-`` (not reached)."""

    name: str
    size: int
    params: int = 0
    layers: int = 0
    stages: dict[str, str] | None = None
    seconds: float = 0.0

    @property
    def green(self) -> bool:
        return self.stages is not None and all(v == OK for v in self.stages.values())

    def markdown(self) -> str:
        stages = self.stages or {}
        cells = [stages.get(stage, "-") for stage in STAGES]
        return (
            f"| {self.name} | {self.size} | {self.params:,} | {self.layers} | "
            + " | ".join(cells)
            + f" | {self.seconds:.0f} |"
        )


def min_size(name: str) -> int:
    return MIN_SIZES.get(name, DEFAULT_MIN_SIZE)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200].replace("|", "/")


def _images(folder: Path, size: int) -> Path:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.png")
    return folder


def _request(work: Path, base: Path, train_dir: Path, family: str, first_n: int) -> TrainingRequest:
    spec = JobSpecSchema().load(
        {
            "base_model": {"uri": "s3://models/base/model.keras"},
            "dataset": {"train": "s3://data/train/", "preprocessing": family},
            "output": {"uri": "s3://models/out/"},
            "head": {},
            "training": {"batch_size": 4, "seed": 0, "feature_cache": "off"},
            "schedule": [
                {"epochs": 1, "learning_rate": 1e-3, "freeze": "base"},
                {"epochs": 1, "learning_rate": 1e-4, "freeze": {"first_n": first_n}},
            ],
        }
    )
    return TrainingRequest(
        job_id="ftj_compat",
        spec=spec,
        base_model_path=str(base),
        train_path=str(train_dir),
        validation_path=None,
        output_dir=str(work / "out"),
    )


def check_architecture(name: str, work: Path) -> Row:
    """Takes one architecture through the stages (see the module's doc) in ``work``."""
    arch = ARCHITECTURES[name]
    size = min_size(name)
    row = Row(name, size)
    stages: dict[str, str] = {}
    row.stages = stages
    started = time.monotonic()
    try:
        built = getattr(keras.applications, name)(
            weights=None, include_top=False, input_shape=(size, size, 3)
        )
        row.params = int(built.count_params())
        base = work / "base.keras"
        built.save(base)
        del built
        keras.backend.clear_session()
    except Exception as exc:  # a Keras build failure is a row of the table, not a crash
        stages["load"] = "build: " + _reason(exc)
        row.seconds = time.monotonic() - started
        return row
    try:
        loaded = load_base_model(base)
        row.layers = len(loaded.layers)
        stages["load"] = OK
    except Exception as exc:
        stages["load"] = _reason(exc)
        row.seconds = time.monotonic() - started
        return row
    request = _request(work, base, _images(work / "train", size), arch.family, row.layers // 2)
    try:
        found = inspect(request)
        stages["freeze"] = (
            OK if not found.errors else "; ".join(f"{k}: {v[0]}" for k, v in found.errors.items())
        )
    except Exception as exc:
        stages["freeze"] = _reason(exc)
    if stages["freeze"] != OK:
        row.seconds = time.monotonic() - started
        return row
    reached: list[str] = []

    def report(message: ChildMessage) -> None:
        if isinstance(message, PhaseStarted):
            reached.append(message.phase)

    try:
        train(request, report)
        stages["fit"] = OK
        stages["export"] = _export_check(work / "out", size)
    except Exception as exc:
        stage = "export" if "exporting" in reached else "fit"
        if stage == "export":
            stages["fit"] = OK
        stages[stage] = _reason(exc)
    row.seconds = time.monotonic() - started
    return row


def _export_check(out: Path, size: int) -> str:
    import tensorflow as tf

    if not (out / "model.keras").is_file():
        return "no model.keras written"
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    scores = next(iter(serve(image=tf.zeros((2, size, size, 3))).values())).numpy()
    if scores.shape != (2, 2) or not np.allclose(scores.sum(axis=1), 1, atol=1e-4):
        return f"the SavedModel answered shape {scores.shape}"
    return OK


def table(rows: list[Row], command: str) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        f"Made by `{command}` on {today} (Keras {keras.__version__}, CPU); "
        f"{sum(r.green for r in rows)} of {len(rows)} rows green.",
        "",
        "| architecture | input | params | layers | load | freeze | fit | export | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
        *(row.markdown() for row in rows),
        END,
    ]
    return "\n".join(lines)


def write_markdown(path: Path, text: str) -> None:
    """Replaces the table between the markers in ``path`` (appends it where there are none)."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) :]
    else:
        new = old + ("\n" if old else "") + text + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="architectures (default: every allowed one)")
    parser.add_argument("--markdown", type=Path, help="a Markdown file to write the table into")
    args = parser.parse_args(argv)
    names = args.only or list(ARCHITECTURES)
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"compat-{name}-") as tmp:
            row = check_architecture(name, Path(tmp))
        keras.backend.clear_session()
        print(row.markdown(), flush=True)
        rows.append(row)
        if args.markdown:  # after every row: a run cut short keeps what it measured
            write_markdown(args.markdown, table(rows, _command(argv)))
    if not args.markdown:
        print(table(rows, _command(argv)))
    return 0 if all(row.green for row in rows) else 1


def _command(argv: list[str] | None) -> str:
    return "python bench/compat_table.py " + " ".join(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
