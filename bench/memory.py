"""Benchmark 6: peak RSS of the worker and of the trainer as the dataset grows 1x, 4x, 16x.

A real worker process (``python -m service worker``, local storage, warm trainer on) runs one
job per dataset size: MobileNetV2 alpha 0.35 at 96x96 (random weights), a new head, base
frozen, 1 epoch, 20% held out for validation, on image folders of 250, 1,000 and 4,000 PNGs.
This script reads ``VmHWM`` (the kernel's peak resident set) of the worker and of each of its
children from /proc every 0.1 s; the trainer's figure is the largest child peak seen during the
job. Twice: with the default cache budget (decoded images kept in memory while they fit) and
with ``FINETUNE_DATA_CACHE_MB=0`` (streamed).

Usage: .venv/bin/python bench/memory.py [--quick]
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
    image_folder,
    in_fresh_process,
    load_average,
    machine,
    save_raw,
    stamp,
    write_section,
)
from bench.training_throughput import CLASSES, make_base_model

SCALES = (1, 4, 16)


def peak_rss_mb(pid: int) -> float | None:
    """``VmHWM`` of a process in MB, or None where it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def run_mode(
    base: Path, folders: dict[int, Path], env_extra: dict[str, str]
) -> list[dict[str, Any]]:
    """One worker; one job per scale; the peaks seen."""
    from schemas import JobSpecSchema
    from service.config import Config
    from service.context import build_services
    from tests.helpers.processes import ServiceProcess

    results = []
    with tempfile.TemporaryDirectory(prefix="perf-bench-memory-") as scratch:
        root = Path(scratch)
        state = f"file://{root / 'state'}"
        services = build_services(Config(state_uri=state, work_dir=root / "client"))
        env = {
            "FINETUNE_STATE_URI": state,
            "FINETUNE_WORK_DIR": str(root / "work"),
            "FINETUNE_POLL_SECONDS": "0.2",
            **env_extra,
        }
        worker = ServiceProcess(
            "worker", [sys.executable, "-m", "service", "worker"], env, root
        ).start()
        assert worker.process is not None
        try:
            for scale, folder in folders.items():
                spec = JobSpecSchema().load(
                    {
                        "base_model": {"uri": f"file://{base}"},
                        "dataset": {"train": f"file://{folder}/", "preprocessing": "rescale"},
                        "head": {"cut_at": -1, "hidden_units": [128]},
                        "freeze": "base",
                        "training": {"epochs": 1, "batch_size": 32, "learning_rate": 1e-4},
                        "output": {"uri": f"file://{root / 'out' / str(scale)}/"},
                    }
                )
                job = services.jobs.create(spec)
                child_peaks: dict[int, float] = {}
                worker_peak = 0.0
                deadline = time.monotonic() + 1800
                while not services.jobs.get(job.id).is_final:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"job {job.id} did not finish")
                    worker_peak = peak_rss_mb(worker.process.pid) or worker_peak
                    for child in children(worker.process.pid):
                        peak = peak_rss_mb(child)
                        if peak is not None:
                            child_peaks[child] = max(peak, child_peaks.get(child, 0.0))
                    time.sleep(0.1)
                final = services.jobs.get(job.id)
                if final.status.value != "succeeded":
                    raise RuntimeError(f"job at {scale}x {final.status}: {final.error}")
                images = sum(1 for p in folder.rglob("*.png"))
                results.append(
                    {
                        "scale": scale,
                        "images": images,
                        "worker_mb": worker_peak,
                        "trainer_mb": max(child_peaks.values(), default=0.0),
                    }
                )
                print(f"    {env_extra or 'default'} {results[-1]} (load {load_average()})")
        finally:
            worker.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes its section of bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    args = parser.parse_args(argv)
    per_class_1x, size = (5, 32) if args.quick else (25, 96)
    root = WORK / f"memory-{size}-{per_class_1x}"
    base = in_fresh_process(make_base_model, root / "base.keras", size, "mobilenet_v2")
    folders = {
        scale: image_folder(root / f"train-{scale}x", CLASSES, per_class_1x * scale, size)
        for scale in SCALES
    }
    load_before = load_average()
    started = time.monotonic()
    modes = {
        "default cache budget (cached)": run_mode(base, folders, {}),
        "FINETUNE_DATA_CACHE_MB=0 (streamed)": run_mode(
            base, folders, {"FINETUNE_DATA_CACHE_MB": "0"}
        ),
    }
    save_raw("memory", modes)
    rows = []
    for name, results in modes.items():
        first = results[0]
        for result in results:
            rows.append(
                f"| {name} | {result['scale']}x ({result['images']} images) | "
                f"{result['worker_mb']:.0f} | {result['trainer_mb']:.0f} | "
                f"{result['trainer_mb'] / first['trainer_mb']:.2f} |"
            )
    minutes = (time.monotonic() - started) / 60
    quick = " --quick" if args.quick else ""
    body = f"""
Command: `{PYTHON} bench/memory.py{quick}`
Machine: {machine()}. Run {stamp()}, {minutes:.0f} min, load average {load_before} before and
{load_average()} after.

One job per dataset size through a real worker process: MobileNetV2 alpha 0.35 {size}x{size},
new head, base frozen, 1 epoch, batch 32, 20% validation; PNG image folders. Peak RSS
(`VmHWM`, MB) of the worker process and of its trainer child; the last column is the trainer's
peak relative to 1x.

| mode | dataset | worker peak MB | trainer peak MB | trainer vs 1x |
|---|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section(6, "Memory: peak RSS as the dataset grows", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
