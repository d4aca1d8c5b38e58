"""Benchmark 3: the service's overhead around training, for a small job.

Per setup, jobs are submitted one after another over HTTP (each at a random moment, so that
submits fall anywhere in the worker's poll cycle) and watched by polling GET every 20 ms:
- pickup latency: submit -> the job shows ``running`` (claimed by the worker);
- overhead: submit -> ``succeeded`` seen, minus the trainer's own ``training`` time (from the
  job's manifest): staging, loading, export, upload, bookkeeping and polling.
Setups: the embedded default (``python -m service serve``, local storage) with the warm trainer
(the default) and without it (``FINETUNE_WARM_TRAINER=0``, as before issue 7); and the
moto-backed setup (moto S3 server, the API under gunicorn, ``python -m service worker``).

Usage: .venv/bin/python bench/overhead.py [--jobs 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
    WORK,
    in_fresh_process,
    load_average,
    machine,
    median,
    percentile,
    save_raw,
    stamp,
    write_section,
)

ONE_MINUTE = 60.0
HEADER = (
    "| setup | pickup p50 s | pickup p95 s | training s | overhead s | % of 1 min | "
    "download / load / export / upload s |\n|---|---|---|---|---|---|---|"
)


def make_inputs(root: Path) -> dict[str, Path]:
    """A pretrained tiny CNN and a 3-class folder of 32x32 digits (120 images)."""
    from tests.helpers.data import write_image_folder
    from tests.helpers.models import pretrain_tiny_cnn

    model, train = root / "model.keras", root / "train"
    if not model.exists():
        pretrain_tiny_cnn(model, epochs=2, per_class=30)
    if not train.exists():
        write_image_folder(train, ["a", "b", "c"], per_class=40, digits=[0, 1, 2])
    return {"model": model, "train": train}


def job_body(model_uri: str, train_uri: str, out_uri: str, epochs: int) -> dict[str, Any]:
    """A small job: new head on the tiny CNN, base frozen."""
    return {
        "base_model": {"uri": model_uri},
        "dataset": {"train": train_uri, "preprocessing": "rescale", "validation_split": 0.25},
        "head": {"cut_at": "gap"},
        "freeze": "base",
        "training": {"epochs": epochs, "batch_size": 16, "learning_rate": 0.01},
        "output": {"uri": out_uri},
    }


def run_jobs(
    base_url: str, bodies: list[dict[str, Any]], read_manifest: Any, timeout: float = 600
) -> list[dict[str, float]]:
    """Submit each job at a random moment and time it; returns one dict per job."""
    import requests

    http = requests.Session()
    results = []
    for body in bodies:
        time.sleep(random.uniform(0.0, 2.5))  # a random phase of the worker's poll cycle
        submitted = time.monotonic()
        response = http.post(f"{base_url}/v1/jobs", json=body, timeout=30)
        response.raise_for_status()
        job_id = response.json()["id"]
        running_at = None
        deadline = submitted + timeout
        while True:
            job = http.get(f"{base_url}/v1/jobs/{job_id}", timeout=30).json()
            now = time.monotonic()
            if running_at is None and job["status"] != "queued":
                running_at = now
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            if now > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']}")
            time.sleep(0.02)
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
        timings = read_manifest(job["result"]["manifest_uri"])["timings"]
        total = now - submitted
        results.append(
            {
                "pickup": (running_at or now) - submitted,
                "total": total,
                "training": float(timings["training"]),
                "overhead": total - float(timings["training"]),
                **{f"t_{k}": float(v) for k, v in timings.items()},
            }
        )
        print(f"    job {job_id}: {results[-1]}")
    return results


def embedded(inputs: dict[str, Path], jobs: int, epochs: int, warm: bool) -> list[dict[str, Any]]:
    """Jobs against ``python -m service serve`` with local state."""
    from tests.helpers.net import free_port, wait_for_http
    from tests.helpers.processes import ServiceProcess

    with tempfile.TemporaryDirectory(prefix="perf-bench-embedded-") as scratch:
        root = Path(scratch)
        port = free_port()
        env = {
            "FINETUNE_STATE_URI": f"file://{root / 'state'}",
            "FINETUNE_WORK_DIR": str(root / "work"),
            "FINETUNE_WARM_TRAINER": "1" if warm else "0",
        }
        argv = [sys.executable, "-m", "service", "serve", "--port", str(port)]
        serve = ServiceProcess("serve", argv, env, root).start()
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
            time.sleep(20 if warm else 2)  # let the warm trainer finish importing TensorFlow
            bodies = [
                job_body(
                    f"file://{inputs['model']}",
                    f"file://{inputs['train']}/",
                    f"file://{root / 'out' / str(i)}/",
                    epochs,
                )
                for i in range(jobs)
            ]
            return run_jobs(
                f"http://127.0.0.1:{port}",
                bodies,
                lambda uri: json.loads(Path(uri.removeprefix("file://")).read_text()),
            )
        finally:
            serve.stop()


def moto_backed(inputs: dict[str, Path], jobs: int, epochs: int) -> list[dict[str, Any]]:
    """Jobs against gunicorn + a worker process, everything on a moto S3 server."""
    import boto3

    from service.storage.s3 import S3ObjectStore
    from tests.helpers.moto_server import MotoServer
    from tests.helpers.net import free_port
    from tests.helpers.processes import gunicorn_api, worker_process

    with tempfile.TemporaryDirectory(prefix="perf-bench-moto-") as scratch, MotoServer() as moto:
        root = Path(scratch)
        s3 = boto3.client("s3", endpoint_url=moto.endpoint, **_credentials(moto.env))
        s3.create_bucket(Bucket="bench")
        store = S3ObjectStore(s3, "bench")
        store.upload_file(inputs["model"], "models/model.keras")
        store.upload_dir(inputs["train"], "data/train/")
        env = {
            **moto.env,
            "FINETUNE_STATE_URI": "s3://bench/state",
            "FINETUNE_WORK_DIR": str(root / "work"),
        }
        port = free_port()
        api = gunicorn_api(port, env, root, workers=2)
        worker = worker_process("worker", env, root)
        try:
            time.sleep(20)  # the worker's warm trainer imports TensorFlow
            bodies = [
                job_body(
                    "s3://bench/models/model.keras",
                    "s3://bench/data/train/",
                    f"s3://bench/out/{i}/",
                    epochs,
                )
                for i in range(jobs)
            ]

            def read_manifest(uri: str) -> dict[str, Any]:
                key = uri.removeprefix("s3://bench/")
                body: dict[str, Any] = json.loads(store.get(key).data)
                return body

            return run_jobs(f"http://127.0.0.1:{port}", bodies, read_manifest)
        finally:
            worker.stop()
            api.stop()


def _credentials(env: dict[str, str]) -> dict[str, str]:
    return {
        "region_name": env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes its section of bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 jobs per setup")
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold-trainer setup")
    args = parser.parse_args(argv)
    jobs = 2 if args.quick else args.jobs
    inputs = in_fresh_process(make_inputs, WORK / "overhead-inputs")
    from service.config import Config

    poll = Config().poll_seconds
    load_before = load_average()
    started = time.monotonic()
    setups: dict[str, list[dict[str, Any]]] = {}
    print("embedded default, warm trainer")
    setups["embedded default (warm trainer)"] = embedded(inputs, jobs, args.epochs, warm=True)
    if not args.skip_cold:
        print("embedded default, cold trainer")
        setups["embedded, FINETUNE_WARM_TRAINER=0"] = embedded(
            inputs, jobs, args.epochs, warm=False
        )
    print("moto-backed")
    setups["moto S3 + gunicorn + worker (warm)"] = moto_backed(inputs, jobs, args.epochs)
    save_raw("overhead", setups)
    rows = []
    for name, results in setups.items():
        pickups = [r["pickup"] for r in results]
        overheads = [r["overhead"] for r in results]
        parts = {
            key: median([r.get(key, 0.0) for r in results])
            for key in ("t_downloading", "t_loading", "t_exporting", "t_uploading")
        }
        rows.append(
            f"| {name} | {median(pickups):.2f} | {percentile(pickups, 95):.2f} | "
            f"{median([r['training'] for r in results]):.1f} | {median(overheads):.1f} | "
            f"{100 * median(overheads) / ONE_MINUTE:.0f}% | "
            f"{parts['t_downloading']:.1f} / {parts['t_loading']:.1f} / "
            f"{parts['t_exporting']:.1f} / {parts['t_uploading']:.1f} |"
        )
    minutes = (time.monotonic() - started) / 60
    quick = " --quick" if args.quick else f" --jobs {args.jobs}"
    body = f"""
Command: `{PYTHON} bench/overhead.py{quick}`
Machine: {machine()}. Run {stamp()}, {minutes:.0f} min, load average {load_before} before and
{load_average()} after.

{jobs} small jobs per setup, one after another, each submitted at a random moment (tiny CNN,
32x32, 90 training + 30 validation images, {args.epochs} epochs, base frozen); the client polls
GET every 20 ms. Pickup: submit -> `running`. Overhead: submit -> `succeeded` seen, minus the
trainer's `training` time from the job's manifest; "% of 1 min" is that overhead against a
one-minute job. Worker poll interval {poll:g} s (`FINETUNE_POLL_SECONDS`). The last column is
the manifest's medians for staging inputs / loading (model, data scan, build: after the
trainer's imports, so a cold child's TensorFlow import shows only in the overhead) / export /
upload, in seconds.

{HEADER}
{chr(10).join(rows)}
"""
    write_section(3, "Overhead: pickup and submit-to-result", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
