"""Shared helpers of the benchmarks: paths, the machine, data, models, and RESULTS.md sections.

Nothing here imports TensorFlow at import time: benchmark drivers stay light and start every
measured run in a fresh process.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# TensorFlow's C++ start-up chatter is noise in a benchmark's log (spawned children inherit it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = REPO / "bench" / "RESULTS.md"
WORK = Path(os.environ.get("BENCH_WORK_DIR", "/tmp/perf-bench"))
PYTHON = ".venv/bin/python"


# the machine ------------------------------------------------------------------------------
def machine() -> str:
    """One line: CPU model and count, memory, no GPU, Python and library versions."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for name in ("tensorflow", "keras", "jax"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    return (
        f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, no GPU; "
        f"Python {platform.python_version()}, {', '.join(versions)}"
    )


def load_average() -> str:
    """The 1-minute load average: other engineers share these 2 cores."""
    return f"{os.getloadavg()[0]:.1f}"


# statistics -------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def ratio_summary(ratios: Sequence[float]) -> str:
    """``median (min-max, n=N)`` of paired ratios."""
    if not ratios:
        return "n/a"
    return f"{median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}, n={len(ratios)})"


def alternate(
    runs: dict[str, Callable[[], float]], repeats: int, log: Callable[[str], None] = print
) -> dict[str, list[float]]:
    """Runs each named measurement once per round, ``repeats`` rounds, in A B / B A order.

    The order flips every round so neither side always runs first (this CPU's speed swings
    2x from one run to the next; only paired ratios measured close together mean anything).
    """
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else list(reversed(names))
        for name in order:
            value = runs[name]()
            results[name].append(value)
            log(f"  round {round_index + 1}/{repeats} {name}: {value:.1f} (load {load_average()})")
    return results


def in_fresh_process(target: Callable[..., Any], *args: Any) -> Any:
    """Runs ``target(*args)`` in a spawned process and returns what it returned (picklable).

    A plain (non-daemon) process, so that the target may start processes of its own (the
    worker's trainer child).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_call_and_send, args=(sender, target, args))
    process.start()
    sender.close()
    try:
        ok, value = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"{target.__name__} died (exit code {process.exitcode})") from None
    process.join()
    if not ok:
        raise RuntimeError(f"{target.__name__} failed:\n{value}")
    return value


def _call_and_send(sender: Any, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    import traceback

    try:
        sender.send((True, target(*args)))
    except BaseException:
        sender.send((False, traceback.format_exc()))
    finally:
        sender.close()


# data and models ---------------------------------------------------------------------------
def digit_arrays(classes: int, per_class: int, size: int, seed: int = 0) -> tuple[Any, Any]:
    """Real handwritten digits (scikit-learn's) upscaled to ``size``, coloured: uint8, labels."""
    from tests.helpers.data import digit_images

    return digit_images(list(range(classes)), per_class, size=size, seed=seed)


def image_folder(
    root: Path, classes: int, per_class: int, size: int, image_format: str = "png"
) -> Path:
    """``root`` holding ``classes`` folders of digit images (the same pixels digit_arrays gives)."""
    from tests.helpers.data import write_image_folder

    marker = root / ".complete"
    if marker.exists():
        return root
    write_image_folder(
        root,
        [str(c) for c in range(classes)],
        per_class,
        size=size,
        digits=list(range(classes)),
        image_format=image_format,
    )
    marker.touch()
    return root


# RESULTS.md ----------------------------------------------------------------------------------
HEADER = """# Benchmark results

Every figure below was produced by the command shown with it, on the machine named in its
section; `make bench` (or `.venv/bin/python bench/run_all.py`) re-runs them all (about 45
minutes on 2 cores; `--quick` is a smoke run whose figures mean little), one benchmark is its
own script:

| section | script | measures |
|---|---|---|
| 1 | bench/training_throughput.py | a job's training vs the plain script; XLA, bf16 |
| 2 | bench/input_pipeline.py | folder and TFRecord pipelines vs the training step |
| 3 | bench/overhead.py | pickup latency, submit-to-result overhead |
| 4 | bench/api_load.py | API under gunicorn, wrk and hey, vs bare Flask |
| 5 | bench/storage_download.py | dataset download vs a plain boto3 loop |
| 6 | bench/memory.py | worker and trainer peak RSS at 1x, 4x, 16x |
| 7 | bench/fit_in_process.py | trainer fit path vs plain fit, one process |
| 8 | bench/gpu/trainer_vs_plain.py | the same on the lent GPU (bench/gpu/README.md) |
| issue 3 | bench/transfer_learning.py | fine-tuned vs from scratch, few labels (last section) |

The machine has 2 cores and a fresh process on it lands at one of two speeds (FACTS.md), so
each comparison is a ratio of paired runs made close together (alternating, several repeats),
with the 1-minute load average during the run. Raw numbers of the last run of each script
are in `$BENCH_WORK_DIR` (default /tmp/perf-bench) as JSON. Other issues' sections keep their
own headings.
"""


def write_section(number: int, title: str, body: str) -> None:
    """Replaces (or adds) the section ``## <number>. <title> (issue 7)`` in bench/RESULTS.md.

    Other sections (other issues' too) stay as they are; issue-7 sections stay in number order.
    """
    heading = f"## {number}. {title} (issue 7)"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    sections = re.split(r"(?m)^(?=## )", text)
    preamble, rest = sections[0], sections[1:]
    pattern = re.compile(rf"^## {number}\. .*\(issue 7\)")
    block = f"{heading}\n\n{body.strip()}\n\n"
    replaced = False
    for index, section in enumerate(rest):
        if pattern.match(section):
            rest[index] = block
            replaced = True
    if not replaced:
        position = len(rest)
        for index, section in enumerate(rest):
            found = re.match(r"^## (\d+)\. .*\(issue 7\)", section)
            if found and int(found.group(1)) > number:
                position = index
                break
        rest.insert(position, block)
    RESULTS.write_text(preamble + "".join(rest))


def save_raw(name: str, data: dict[str, Any]) -> Path:
    """Keeps a benchmark's raw numbers as JSON under the work dir, for a closer look."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def stamp() -> str:
    """The date and time of a run, UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
