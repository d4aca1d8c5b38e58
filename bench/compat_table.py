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

    nice python bench/compat_table.py --markdown docs/MODELS.md            # every architecture
    nice python bench/compat_table.py --markdown docs/MODELS.md --missing  # those not yet in it
    nice python bench/compat_table.py --only MobileNetV2 VGG16             # some, printed

Each architecture runs in a process of its own (``--jobs`` at once), so a native crash or a
timeout is that row's reason, not the end of the run. ``--markdown`` merges the rows into the
table between the markers ``<!-- compat-table -->`` and ``<!-- /compat-table -->`` of that file
(rows of architectures not run are kept, each with its date), after every row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from service.contract.request import TrainingRequest

# The parent only schedules processes and writes the table: Keras and TensorFlow are imported
# by the per-architecture process (check_architecture), one architecture per process.

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
    measured: str = ""  # when (UTC) and with which Keras

    @property
    def green(self) -> bool:
        return self.stages is not None and all(v == OK for v in self.stages.values())

    def markdown(self) -> str:
        stages = self.stages or {}
        cells = [stages.get(stage, "-") for stage in STAGES]
        return (
            f"| {self.name} | {self.size} | {self.params:,} | {self.layers} | "
            + " | ".join(cells)
            + f" | {self.seconds:.0f} | {self.measured} |"
        )


def min_size(name: str) -> int:
    return MIN_SIZES.get(name, DEFAULT_MIN_SIZE)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200].replace("|", "/")


def _images(folder: Path, size: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.png")
    return folder


def _request(work: Path, base: Path, train_dir: Path, family: str, first_n: int) -> TrainingRequest:
    from schemas import JobSpecSchema
    from service.contract.request import TrainingRequest

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
    import keras

    from service.contract.architectures import ARCHITECTURES
    from service.contract.messages import ChildMessage, PhaseStarted
    from service.trainer.inspection import inspect
    from service.trainer.loading import load_base_model
    from service.trainer.run import train

    arch = ARCHITECTURES[name]
    size = min_size(name)
    row = Row(name, size, measured=f"{_now()} Keras {keras.__version__}")
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
    import numpy as np
    import tensorflow as tf

    if not (out / "model.keras").is_file():
        return "no model.keras written"
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    scores = next(iter(serve(image=tf.zeros((2, size, size, 3))).values())).numpy()
    if scores.shape != (2, 2) or not np.allclose(scores.sum(axis=1), 1, atol=1e-4):
        return f"the SavedModel answered shape {scores.shape}"
    return OK


def table(rows: list[Row]) -> str:
    """The table in Markdown between its markers: every allowed architecture, measured or not."""
    by_name = {row.name: row for row in rows}
    measured = [by_name[name] for name in _allowed() if name in by_name]
    missing = [name for name in _allowed() if name not in by_name]
    lines = [
        BEGIN,
        f"{len(measured)} of {len(_allowed())} allowed architectures measured, "
        f"{sum(r.green for r in measured)} green; each row says when and with which Keras it ran "
        "(CPU). Seconds are wall time on the shared 2-core CPU, which other work loaded.",
    ]
    if missing:
        lines.append("Not yet measured: " + ", ".join(missing) + ".")
    lines += [
        "",
        "| architecture | input | params | layers | load | freeze | fit | export | seconds "
        "| measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(row.markdown() for row in measured),
        END,
    ]
    return "\n".join(lines)


def read_rows(path: Path) -> list[Row]:
    """The rows of the table in ``path`` (none where it has no table)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN not in text or END not in text:
        return []
    body = text[text.index(BEGIN) : text.index(END)]
    rows = []
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 + len(STAGES) + 2 or not cells[1].isdigit():
            continue  # the header, its rule, or text
        name, size, params, layers, *stages, seconds, when = cells
        rows.append(
            Row(
                name, int(size), int(params.replace(",", "")), int(layers),
                dict(zip(STAGES, stages, strict=True)), float(seconds), when,
            )
        )  # fmt: skip
    return rows


def write_markdown(path: Path, text: str) -> None:
    """Replaces the table between the markers in ``path`` (appends it where there are none)."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) :]
    else:
        new = old + ("\n" if old else "") + text + "\n"
    path.write_text(new)


def run_row(name: str, timeout: float) -> Row:
    """One architecture checked in a process of its own: a native crash is a row, not the end."""
    with tempfile.TemporaryDirectory(prefix=f"compat-{name}-") as tmp:
        result = Path(tmp) / "row.json"
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--row", name, "--work", tmp, "--json", str(result)],
                timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return _failed_row(name, f"not finished in {timeout:.0f} s", started)
        if result.is_file():
            return Row(**json.loads(result.read_text()))
        cause = (
            f"the process was killed by signal {-done.returncode} "
            f"({signal.Signals(-done.returncode).name})"
            if done.returncode < 0
            else f"the process exited with {done.returncode}"
        )
        last = (done.stderr.strip().splitlines() or [""])[-1][:120].replace("|", "/")
        return _failed_row(name, f"{cause}: {last}" if last else cause, started)


def _failed_row(name: str, reason: str, started: float) -> Row:
    return Row(
        name, min_size(name), stages={"load": reason}, seconds=time.monotonic() - started,
        measured=_now(),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="*", help="architectures (default: every allowed one)")
    parser.add_argument("--markdown", type=Path, help="a Markdown file to merge the rows into")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="architectures at once")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per architecture")
    parser.add_argument("--missing", action="store_true", help="only those --markdown lacks")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # the per-architecture process
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        row = check_architecture(args.row, args.work)
        args.json.write_text(json.dumps(asdict(row)))
        return 0
    rows = read_rows(args.markdown) if args.markdown else []
    names = args.only or _allowed()
    if args.missing:
        names = [name for name in names if name not in {row.name for row in rows}]
    unknown = sorted(set(names) - set(_allowed()))
    if unknown:
        parser.error(f"not allowed architectures: {', '.join(unknown)}")
    failed = False
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_row, name, args.timeout) for name in names]
        for future in as_completed(futures):
            row = future.result()
            print(row.markdown(), flush=True)
            failed |= not row.green
            rows = [old for old in rows if old.name != row.name] + [row]
            if args.markdown:  # after every row: a run cut short keeps what it measured
                write_markdown(args.markdown, table(rows))
    if not args.markdown:
        print(table(rows))
    return 1 if failed else 0


def _allowed() -> list[str]:
    from service.contract.architectures import ARCHITECTURES

    return list(ARCHITECTURES)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")


if __name__ == "__main__":
    sys.exit(main())
