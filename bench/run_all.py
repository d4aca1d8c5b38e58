"""Runs every benchmark in turn and writes bench/RESULTS.md (each its own section).

Usage: .venv/bin/python bench/run_all.py [--quick] [--only NAME ...]

Names: training_throughput, input_pipeline, overhead, api_load, storage_download, memory,
fit_in_process.
A full run takes about 45 minutes on the 2-core machine; ``--quick`` is a smoke run of minutes
whose figures mean little. The GPU script (bench/gpu/) runs on the lent device instead; see
bench/gpu/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCHMARKS = (
    "training_throughput",
    "input_pipeline",
    "overhead",
    "api_load",
    "storage_download",
    "memory",
    "fit_in_process",
)


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen benchmarks; a failing one is reported and the rest still run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-run sizes")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args(argv)
    failed = []
    for name in args.only:
        started = time.monotonic()
        print(f"=== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        try:
            module.main(["--quick"] if args.quick else [])
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"=== {name} FAILED: {exc!r}", flush=True)
            failed.append(name)
        print(f"=== {name} took {(time.monotonic() - started) / 60:.1f} min", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
