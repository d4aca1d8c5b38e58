"""Benchmark 5: dataset download throughput, the service's staging vs a plain boto3 loop.

The service side is what the worker runs to stage a dataset: ``ObjectStore.download_prefix``
(S3ObjectStore with the service's client from make_s3_client; LocalObjectStore for file://).
The reference is what a user would write: ``list_objects_v2`` pages and a thread pool of 8
calling ``client.download_file`` (a default boto3 client), or ``shutil.copytree`` for local.
Two datasets: many small files (1,000 PNG images, as image folders are) and a few large ones
(8 shards of 16 MB, as TFRecord datasets are). The S3 server is moto (stock, threaded) on
loopback: it bounds both sides alike. Service and reference alternate, ``--repeats`` rounds.

Usage: .venv/bin/python bench/storage_download.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
    WORK,
    alternate,
    image_folder,
    load_average,
    machine,
    median,
    ratio_summary,
    save_raw,
    stamp,
    write_section,
)


def make_datasets(root: Path, quick: bool) -> dict[str, Path]:
    """``small``: PNG images in class folders; ``large``: 16 MB binary shards."""
    small = image_folder(root / ("small-quick" if quick else "small"), 10, 10 if quick else 100, 96)
    large = root / ("large-quick" if quick else "large")
    if not (large / ".complete").exists():
        large.mkdir(parents=True, exist_ok=True)
        count, size = (2, 4) if quick else (8, 16)
        for index in range(count):
            (large / f"train-{index:05d}.tfrecord").write_bytes(os.urandom(size * 2**20))
        (large / ".complete").touch()
    return {"small": small, "large": large}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def plain_boto3(client: Any, bucket: str, prefix: str, dest: Path, workers: int = 8) -> None:
    """The reference: list, then download_file in a thread pool."""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))

    def fetch(key: str) -> None:
        path = dest / key[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(path))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fetch, keys))


def _service_download(store: Any, prefix: str, dest: Path) -> None:
    store.download_prefix(prefix, dest)


def timed(download: Callable[[Path], None], total_bytes: int) -> float:
    """MB/s of one download into a fresh folder."""
    dest = Path(tempfile.mkdtemp(prefix="perf-bench-dl-"))
    try:
        started = time.perf_counter()
        download(dest / "d")
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return total_bytes / 2**20 / elapsed


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes its section of bench/RESULTS.md."""
    import boto3

    from service.storage.client import make_s3_client
    from service.storage.local import LocalObjectStore
    from service.storage.s3 import S3ObjectStore
    from tests.helpers.moto_server import MotoServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="few, smaller files")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    datasets = make_datasets(WORK / "storage", args.quick)
    load_before = load_average()
    started = time.monotonic()
    raw: dict[str, Any] = {}
    rows = []
    with MotoServer(serialize_requests=False) as moto:
        os.environ.update(moto.env)
        client = make_s3_client()
        client.create_bucket(Bucket="bench")
        service_store = S3ObjectStore(client, "bench")
        plain_client = boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            region_name=moto.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=moto.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=moto.env["AWS_SECRET_ACCESS_KEY"],
        )
        for name, folder in datasets.items():
            files = _files(folder)
            total = sum(p.stat().st_size for p in files)
            service_store.upload_dir(folder, f"{name}/")
            local = LocalObjectStore(WORK / "storage-local-store")
            local.upload_dir(folder, f"{name}/")
            local_root = WORK / "storage-local-store" / name
            print(f"{name}: {len(files)} files, {total / 2**20:.1f} MB")
            s3_runs = {
                "service": partial(
                    timed, partial(_service_download, service_store, f"{name}/"), total
                ),
                "plain": partial(
                    timed, partial(plain_boto3, plain_client, "bench", f"{name}/"), total
                ),
            }
            local_runs = {
                "service": partial(timed, partial(_service_download, local, f"{name}/"), total),
                "plain": partial(timed, partial(shutil.copytree, local_root), total),
            }
            for backend, runs in (("moto S3", s3_runs), ("local", local_runs)):
                results = alternate(runs, repeats)
                ratios = [s / p for s, p in zip(results["service"], results["plain"], strict=True)]
                raw[f"{name} {backend}"] = {**results, "ratios": ratios}
                reference = "boto3 download_file x8 threads" if backend != "local" else "copytree"
                rows.append(
                    f"| {name}: {len(files)} files, {total / 2**20:.0f} MB | {backend} | "
                    f"{median(results['service']):.1f} | {median(results['plain']):.1f} "
                    f"({reference}) | {ratio_summary(ratios)} |"
                )
    save_raw("storage_download", raw)
    minutes = (time.monotonic() - started) / 60
    quick = " --quick" if args.quick else f" --repeats {repeats}"
    body = f"""
Command: `{PYTHON} bench/storage_download.py{quick}`
Machine: {machine()}. Run {stamp()}, {minutes:.0f} min, load average {load_before} before and
{load_average()} after; the moto server runs on the same 2 cores.

MB/s of one whole-dataset download into an empty folder. Service: `download_prefix` (what the
worker's Stager runs). Reference: a plain boto3 loop (list pages, 8 threads of
`client.download_file`), or `shutil.copytree` for local storage. Medians of {repeats}
alternating rounds; ratio = service / reference of paired rounds.

| dataset | storage | service MB/s | reference MB/s | service / reference |
|---|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section(5, "Storage: dataset download", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
