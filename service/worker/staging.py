"""Copies a job's inputs from storage to local scratch, and its outputs back."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from service.storage.errors import NoSuchKey, StorageError, StorageUnavailable
from service.storage.resolver import Storage
from service.worker.errors import JobFailure

log = logging.getLogger(__name__)


@dataclass
class StagedInputs:
    """Local copies of a job's inputs, with what the manifest records of them."""

    base_model_path: Path
    train_path: Path
    validation_path: Path | None
    base_model_sha256: str
    dataset_files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, or of a folder's files (relative names and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _storage_failure(what: str, uri: str, exc: StorageError) -> JobFailure:
    if isinstance(exc, StorageUnavailable):
        return JobFailure(
            "storage", f"Could not read {what} {uri}: storage is unreachable ({exc})."
        )
    return JobFailure("storage", f"Could not read {what} {uri}: {exc}.")


class Stager:
    """Downloads inputs and uploads outputs for one job."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def stage_inputs(self, spec: dict[str, Any], dest: Path) -> StagedInputs:
        """Download base model and dataset under ``dest``; JobFailure names what is missing."""
        model_path = self._stage_model(spec["base_model"]["uri"], dest / "model")
        dataset = spec["dataset"]
        listings: dict[str, list[dict[str, Any]]] = {}
        train = self._stage_dataset("dataset.train", dataset["train"], dest / "train", listings)
        validation = None
        if dataset.get("validation"):
            validation = self._stage_dataset(
                "dataset.validation", dataset["validation"], dest / "validation", listings
            )
        return StagedInputs(model_path, train, validation, sha256_of(model_path), listings)

    def _stage_model(self, uri: str, dest: Path) -> Path:
        store, key = self._storage.open(uri)
        try:
            if key.endswith("/") or key == "":
                infos = store.download_prefix(key, dest / "saved_model")
                if not infos:
                    raise JobFailure(
                        "invalid_model",
                        f"base_model.uri: nothing is stored under {uri}. "
                        "Point it at a .keras or .h5 file or a SavedModel folder.",
                    )
                return dest / "saved_model"
            local = dest / PurePosixPath(key).name
            dest.mkdir(parents=True, exist_ok=True)
            store.download_file(key, local)
            return local
        except NoSuchKey as exc:
            raise JobFailure(
                "invalid_model",
                f"base_model.uri: no model file at {uri}. Check the path; "
                "a SavedModel folder must end with '/'.",
            ) from exc
        except JobFailure:
            raise
        except StorageError as exc:
            raise _storage_failure("the base model", uri, exc) from exc

    def _stage_dataset(
        self, field_name: str, uri: str, dest: Path, listings: dict[str, list[dict[str, Any]]]
    ) -> Path:
        store, key = self._storage.open(uri)
        prefix = key if key.endswith("/") or key == "" else key + "/"
        try:
            infos = store.download_prefix(prefix, dest)
        except StorageError as exc:
            raise _storage_failure(field_name, uri, exc) from exc
        if not infos:
            raise JobFailure(
                "invalid_dataset",
                f"{field_name}: no files under {uri}. Upload one folder of images "
                "per class there (for example .../cats/1.jpg, .../dogs/2.jpg).",
            )
        listings[field_name] = [
            {"key": info.key[len(prefix) :], "size": info.size, "etag": info.etag} for info in infos
        ]
        return dest

    def upload_outputs(self, output_uri: str, local_dir: Path, names: list[str]) -> None:
        """Upload ``names`` (files or folders under ``local_dir``) below ``output_uri``."""
        store, prefix = self._storage.open(output_uri)
        for name in names:
            path = local_dir / name
            try:
                if path.is_dir():
                    store.upload_dir(path, prefix + name + "/")
                else:
                    store.upload_file(path, prefix + name)
            except StorageError as exc:
                raise JobFailure(
                    "storage", f"Could not write the result to {output_uri}: {exc}."
                ) from exc

    def remove_outputs(self, output_uri: str, names: list[str]) -> None:
        """Delete what ``upload_outputs`` wrote for ``names`` (a cancelled or failed publish)."""
        store, prefix = self._storage.open(output_uri)
        for name in names:
            for info in list(store.list(prefix + name + "/")):
                store.delete(info.key)
            store.delete(prefix + name)

    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write one small object (the manifest)."""
        store, key = self._storage.open(uri)
        try:
            store.put(key, data)
        except StorageError as exc:
            raise JobFailure("storage", f"Could not write {uri}: {exc}.") from exc
