"""Benchmark 4: the API under gunicorn on loopback, as a ratio to a bare Flask app.

Both run under ``gunicorn -c deploy/gunicorn.conf.py`` (2 workers x 4 threads, gthread, access
log on, as deployed); the service with local job state (the embedded default's backend) and no
worker, the bare app (bench/bare_app.py) with the same two routes doing no work. For
``GET /v1/jobs/{id}`` and ``POST /v1/jobs`` (a valid spec; each creates a job):
- most requests/s: wrk, 2 threads, 16 connections (closed loop);
- latency at a fixed 200 requests/s: hey, 10 workers at 20 requests/s each (p50/p99).
Service and bare app alternate, ``--repeats`` rounds. wrk and hey run on the same 2 cores as
the servers, so absolute figures are low; the ratios compare like with like.

Usage: .venv/bin/python bench/api_load.py [--repeats 2] [--seconds 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
    load_average,
    machine,
    median,
    ratio_summary,
    save_raw,
    stamp,
    write_section,
)

SPEC = {
    "base_model": {"uri": "file:///tmp/perf-bench/none/model.keras"},
    "dataset": {"train": "file:///tmp/perf-bench/none/train/"},
    "output": {"uri": "file:///tmp/perf-bench/none/out/"},
}
RATE = 200


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, seconds: int, body_file: Path | None) -> dict[str, float]:
    """Most requests/s and p99 latency (s) with wrk; POST where ``body_file`` is given."""
    argv = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    if body_file is not None:
        script = body_file.with_suffix(".lua")
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body_file.read_text())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        argv += ["-s", str(script)]
    output = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p99": _seconds(re.search(r"99%\s+(\S+)", output).group(1)),  # type: ignore[union-attr]
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def hey(url: str, seconds: int, body_file: Path | None) -> dict[str, float]:
    """p50 and p99 latency (s) at a fixed 200 requests/s with hey."""
    argv = ["hey", "-z", f"{seconds}s", "-c", "10", "-q", str(RATE // 10)]
    if body_file is not None:
        argv += ["-m", "POST", "-T", "application/json", "-D", str(body_file)]
    output = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", output))
    bad = sum(int(n) for code, n in codes.items() if not code.startswith("2"))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50": float(re.search(r"50% in ([\d.]+) secs", output).group(1)),  # type: ignore[union-attr]
        "p99": float(re.search(r"99% in ([\d.]+) secs", output).group(1)),  # type: ignore[union-attr]
        "errors": float(bad),
    }


def start(app: str, env: dict[str, str], log_dir: Path) -> tuple[Any, int]:
    """gunicorn with the deployed settings serving ``app``; returns (process, port)."""
    from tests.helpers.net import free_port, wait_for_http
    from tests.helpers.processes import VENV_BIN, ServiceProcess

    port = free_port()
    argv = [
        str(VENV_BIN / "gunicorn"),
        "-c",
        "deploy/gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        app,
    ]
    process = ServiceProcess(f"gunicorn-{port}", argv, env, log_dir).start()
    wait_for_http(f"http://127.0.0.1:{port}/v1/jobs/x", timeout=60)
    return process, port


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes its section of bench/RESULTS.md."""
    import requests

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s each")
    args = parser.parse_args(argv)
    repeats, seconds = (1, 3) if args.quick else (args.repeats, args.seconds)
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install -y wrk hey")
    scratch = Path(tempfile.mkdtemp(prefix="perf-bench-api-"))
    body_file = scratch / "spec.json"
    body_file.write_text(json.dumps(SPEC))
    env = {
        "FINETUNE_STATE_URI": f"file://{scratch / 'state'}",
        "FINETUNE_WORK_DIR": str(scratch / "work"),
        "GUNICORN_ACCESSLOG": "-",
    }
    service, service_port = start("service.app:create_app()", env, scratch)
    bare, bare_port = start("bench.bare_app:create_app()", env, scratch)
    load_before = load_average()
    started = time.monotonic()
    results: dict[str, dict[str, list[dict[str, float]]]] = {"service": {}, "bare": {}}
    try:
        job = requests.post(f"http://127.0.0.1:{service_port}/v1/jobs", json=SPEC, timeout=30)
        job.raise_for_status()
        job_id = job.json()["id"]
        urls = {
            "service": f"http://127.0.0.1:{service_port}/v1/jobs",
            "bare": f"http://127.0.0.1:{bare_port}/v1/jobs",
        }
        for round_index in range(repeats):
            order = ["service", "bare"] if round_index % 2 == 0 else ["bare", "service"]
            for side in order:
                for name, measure, url, body in (
                    ("wrk GET", wrk, f"{urls[side]}/{job_id}", None),
                    ("wrk POST", wrk, urls[side], body_file),
                    ("hey GET", hey, f"{urls[side]}/{job_id}", None),
                    ("hey POST", hey, urls[side], body_file),
                ):
                    value = measure(url, seconds, body)
                    results[side].setdefault(name, []).append(value)
                    print(f"  {round_index + 1} {side} {name}: {value} (load {load_average()})")
    finally:
        service.stop()
        bare.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    save_raw("api_load", results)

    def paired(name: str, key: str) -> list[float]:
        return [
            s[key] / b[key]
            for s, b in zip(results["service"][name], results["bare"][name], strict=True)
        ]

    rows = []
    for method in ("GET", "POST"):
        path = "/v1/jobs/{id}" if method == "GET" else "/v1/jobs"
        most, fixed = f"wrk {method}", f"hey {method}"
        service_errors = sum(
            r["errors"] for r in results["service"][most] + results["service"][fixed]
        )
        rows.append(
            f"| {method} {path} | {median([r['rps'] for r in results['service'][most]]):.0f} | "
            f"{median([r['rps'] for r in results['bare'][most]]):.0f} | "
            f"{ratio_summary(paired(most, 'rps'))} | "
            f"{1000 * median([r['p50'] for r in results['service'][fixed]]):.1f} | "
            f"{1000 * median([r['p99'] for r in results['service'][fixed]]):.1f} | "
            f"{1000 * median([r['p99'] for r in results['bare'][fixed]]):.1f} | "
            f"{ratio_summary(paired(fixed, 'p99'))} | {service_errors:.0f} |"
        )
    minutes = (time.monotonic() - started) / 60
    quick = " --quick" if args.quick else f" --repeats {repeats} --seconds {seconds}"
    header = (
        "| endpoint | service req/s (wrk) | bare req/s | service / bare | "
        f"p50 ms at {RATE}/s | p99 ms at {RATE}/s | bare p99 ms | p99 service / bare | "
        "non-2xx |"
    )
    body = f"""
Command: `{PYTHON} bench/api_load.py{quick}`
Machine: {machine()}. Run {stamp()}, {minutes:.0f} min, load average {load_before} before and
{load_average()} after; wrk/hey share the 2 cores with the servers.

gunicorn -c deploy/gunicorn.conf.py (2 workers x 4 threads, access log on) on 127.0.0.1; the
service with local job state and no worker; the bare app is bench/bare_app.py. Most req/s: wrk
-t2 -c16 for {seconds} s. Latency: hey at {RATE} requests/s (10 workers x 20/s) for
{seconds} s. Medians of {repeats} alternating rounds; ratios of paired rounds.

{header}
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section(4, "API under gunicorn", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
