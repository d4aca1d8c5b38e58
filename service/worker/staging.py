"""Copies a job's inputs from storage to local scratch, and its outputs back.

A dataset URI names one of (API.md):

- a prefix (``s3://b/train/``): a folder of class folders, or of TFRecord files;
- one object: a ``.zip`` / ``.tar.gz`` / ``.tgz`` / ``.tar`` archive of class folders (checked and
  unpacked here, in the worker, see archives.py), an ``.npz``, or one ``.tfrecord`` file;
- a glob (``s3://b/train-*.tfrecord``): the TFRecord files it matches.

``dataset.format: auto`` decides by name, then by content; the trainer gets a local path and
what it holds (``image_folder``, ``npz`` or ``tfrecord``). A URI without a trailing '/' that names
no object is read as a prefix, as the first release did.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from service.contract.formats import GLOB_CHARS, NPZ_SUFFIX, TFRECORD_SUFFIXES, glob_folder
from service.contract.plan import JobPlan
from service.storage.base import ObjectInfo, ObjectStore, local_path_for
from service.storage.errors import NoSuchKey, StorageError, StorageUnavailable
from service.storage.resolver import Storage
from service.worker import retry_policies
from service.worker.archives import (
    GZIP_SIGNATURE,
    ZIP_SIGNATURE,
    ArchiveLimits,
    archive_kind,
    dataset_root,
    extract_archive,
    invalid_dataset,
    remove,
)
from service.worker.errors import JobFailure
from service.worker.faults import downloading

log = logging.getLogger(__name__)


@dataclass
class StagedDataset:
    """One staged dataset: where it is and what it holds.

    Attributes:
        path: The local folder (image_folder, tfrecord) or file (npz, one tfrecord file).
        format: ``image_folder``, ``npz`` or ``tfrecord``.
        files: What the manifest records: per object ``key`` (relative), ``size``, ``etag``, and
            ``sha256`` for a single-object dataset.
    """

    path: Path
    format: str
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StagedInputs:
    """Local copies of a job's inputs, with what the manifest records of them.

    Attributes:
        base_model_uri: Where the base model (or the named architecture's weights) came from.
        dataset_uris: Per dataset field (``dataset.train``, ``dataset.validation``,
            ``dataset.test``) its URI.
        test_path, test_format: The staged test set (read only by the final evaluation).
    """

    base_model_path: Path
    train_path: Path
    validation_path: Path | None
    base_model_sha256: str
    dataset_files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    train_format: str = "image_folder"
    validation_format: str | None = None
    test_path: Path | None = None
    test_format: str | None = None
    base_model_uri: str = ""
    dataset_uris: dict[str, str | None] = field(default_factory=dict)


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


def _storage_failure(what: str, uri: str, exc: StorageError, field_name: str) -> JobFailure:
    if isinstance(exc, StorageUnavailable):
        return JobFailure(
            "storage",
            f"Could not read {what} {uri}: storage is unreachable ({exc}).",
            field=field_name,
        )
    return JobFailure("storage", f"Could not read {what} {uri}: {exc}.", field=field_name)


def _invalid_model(field_name: str, message: str) -> JobFailure:
    return JobFailure("invalid_model", f"{field_name}: {message}", field=field_name)


class Stager:
    """Downloads inputs and uploads outputs for one job.

    Args:
        storage: Opens the stores behind URIs.
        limits: Caps on what a dataset archive may unpack to.
        outage_seconds: How long a publish waits out unreachable storage before the job fails;
            None: as retry_policies.PUBLISH says.
    """

    def __init__(
        self,
        storage: Storage,
        limits: ArchiveLimits | None = None,
        outage_seconds: float | None = None,
    ) -> None:
        self._storage = storage
        self.limits = limits or ArchiveLimits()
        self._publish = (
            retry_policies.PUBLISH
            if outage_seconds is None
            else retry_policies.PUBLISH.replace(deadline=outage_seconds)
        )

    def stage_inputs(
        self, plan: JobPlan, dest: Path, sample_per_class: int | None = None
    ) -> StagedInputs:
        """Download base model and dataset under ``dest``; JobFailure names what is missing.

        Args:
            plan: The job's plan (its base model and dataset sources).
            dest: A folder inside the job's scratch folder.
            sample_per_class: Download at most this many images per class (and one TFRecord
                file) for the dry run; None downloads everything.
        """
        base, dataset = plan.base_model, plan.dataset
        if base.weights_uri is not None:
            model_path = self._stage_weights(base.weights_uri, dest / "weights")
        else:
            model_path = self.stage_model(base.location, dest / "model")
        train = self.stage_dataset(
            "dataset.train", dataset.train, dest / "train", dataset.format, sample_per_class
        )
        validation = None
        if dataset.validation:
            validation = self.stage_dataset(
                "dataset.validation",
                dataset.validation,
                dest / "validation",
                dataset.format,
                sample_per_class,
            )
        test = None
        if dataset.test:
            test = self.stage_dataset(
                "dataset.test", dataset.test, dest / "test", dataset.format, sample_per_class
            )
        listings = {"dataset.train": train.files}
        if validation is not None:
            listings["dataset.validation"] = validation.files
        if test is not None:
            listings["dataset.test"] = test.files
        return StagedInputs(
            model_path,
            train.path,
            validation.path if validation else None,
            sha256_of(model_path),
            listings,
            train_format=train.format,
            validation_format=validation.format if validation else None,
            test_path=test.path if test else None,
            test_format=test.format if test else None,
            base_model_uri=base.location,
            dataset_uris={
                "dataset.train": dataset.train,
                "dataset.validation": dataset.validation,
                "dataset.test": dataset.test,
            },
        )

    def _stage_weights(self, uri: str, dest: Path) -> Path:
        """The named architecture's weights file: one object, whose sha256 the manifest keeps."""
        store, key = self._storage.open(uri)
        if key.endswith("/") or key == "":
            raise _invalid_model(
                "base_model.weights_uri",
                f"{uri} is a prefix; give the weights file itself (.h5 or .weights.h5).",
            )
        local = dest / PurePosixPath(key).name
        dest.mkdir(parents=True, exist_ok=True)
        try:
            store.download_file(key, local)
        except NoSuchKey as exc:
            raise _invalid_model(
                "base_model.weights_uri", f"no weights file at {uri}. Check the path."
            ) from exc
        except StorageError as exc:
            raise _storage_failure("the weights file", uri, exc, "base_model.weights_uri") from exc
        return local

    def stage_model(
        self, uri: str, dest: Path, field_name: str = "base_model.uri", what: str = "the base model"
    ) -> Path:
        """Download a model file or SavedModel folder (``field_name`` names it in failures)."""
        store, key = self._storage.open(uri)
        try:
            if key.endswith("/") or key == "":
                # Checked before anything is downloaded: a prefix that is not a SavedModel
                # folder may hold any amount of anything.
                if not store.exists(f"{key}saved_model.pb"):
                    found = store.find_any(key)
                    raise _invalid_model(
                        field_name,
                        (
                            f"{uri} holds no saved_model.pb, so it is not a SavedModel folder. "
                            if found is not False
                            else f"nothing is stored under {uri}. "
                        )
                        + "Point it at a .keras or .h5 file or a SavedModel folder.",
                    )
                store.download_prefix(key, dest / "saved_model")
                return dest / "saved_model"
            local = dest / PurePosixPath(key).name
            dest.mkdir(parents=True, exist_ok=True)
            store.download_file(key, local)
            return local
        except NoSuchKey as exc:
            raise _invalid_model(
                field_name,
                f"no model file at {uri}. Check the path; a SavedModel folder must end with '/'.",
            ) from exc
        except JobFailure:
            raise
        except StorageError as exc:
            raise _storage_failure(what, uri, exc, field_name) from exc

    def stage_dataset(
        self,
        field_name: str,
        uri: str,
        dest: Path,
        declared: str = "auto",
        sample_per_class: int | None = None,
    ) -> StagedDataset:
        """Download one dataset (prefix, object or glob) into ``dest`` and say what it holds.

        Raises:
            JobFailure: ``invalid_dataset`` (nothing there, a format that does not fit, a
                refused archive) or ``storage``.
        """
        store, key = self._storage.open(uri)
        try:
            if GLOB_CHARS.search(key):
                return self._stage_glob(
                    field_name, uri, store, key, dest, declared, sample_per_class
                )
            if key and not key.endswith("/"):
                first = next(iter(store.list(key)), None)
                if first is not None and first.key == key:
                    return self._stage_object(
                        field_name, uri, store, first, dest, declared, sample_per_class
                    )
                key += "/"
            return self._stage_prefix(field_name, uri, store, key, dest, declared, sample_per_class)
        except StorageError as exc:
            raise _storage_failure(field_name, uri, exc, field_name) from exc

    # the three shapes of a dataset URI ---------------------------------------------------
    def _stage_prefix(
        self,
        field_name: str,
        uri: str,
        store: ObjectStore,
        prefix: str,
        dest: Path,
        declared: str,
        sample_per_class: int | None,
    ) -> StagedDataset:
        if declared in ("zip", "tar", "npz"):
            raise invalid_dataset(
                field_name,
                f"dataset.format is {declared!r} but {uri} is a prefix (a folder). Point it at "
                f"the {declared} file, or set dataset.format to 'auto'.",
            )
        infos = [info for info in store.list(prefix) if not info.key.endswith("/")]
        if not infos:
            raise invalid_dataset(
                field_name,
                f"no files under {uri}. Upload one folder of images per class there (for "
                "example .../cats/1.jpg, .../dogs/2.jpg), or point it at an archive, an .npz or "
                "TFRecord files.",
            )
        records = all(info.key.lower().endswith(TFRECORD_SUFFIXES) for info in infos)
        data_format = (
            "tfrecord"
            if declared == "tfrecord" or (declared == "auto" and records)
            else ("image_folder")
        )
        chosen = infos
        if sample_per_class is not None:
            chosen = (
                infos[:1] if data_format == "tfrecord" else _sample(infos, prefix, sample_per_class)
            )
        self._download(store, chosen, prefix, dest)
        return StagedDataset(dest, data_format, _listing(chosen, prefix))

    def _stage_glob(
        self,
        field_name: str,
        uri: str,
        store: ObjectStore,
        pattern: str,
        dest: Path,
        declared: str,
        sample_per_class: int | None,
    ) -> StagedDataset:
        if declared not in ("auto", "tfrecord"):
            raise invalid_dataset(
                field_name,
                f"a glob ({uri}) selects TFRecord files; dataset.format {declared!r} does not "
                "fit. Set dataset.format to 'auto' or 'tfrecord'.",
            )
        folder = glob_folder(pattern)
        infos = [
            info
            for info in store.list(folder)
            if not info.key.endswith("/") and fnmatch.fnmatchcase(info.key, pattern)
        ]
        if not infos:
            raise invalid_dataset(field_name, f"no files match {uri}. Check the pattern.")
        if sample_per_class is not None:
            infos = infos[:1]
        self._download(store, infos, folder, dest)
        return StagedDataset(dest, "tfrecord", _listing(infos, folder))

    def _stage_object(
        self,
        field_name: str,
        uri: str,
        store: ObjectStore,
        info: ObjectInfo,
        dest: Path,
        declared: str,
        sample_per_class: int | None,
    ) -> StagedDataset:
        name = PurePosixPath(info.key).name
        download = dest / "download" / name
        download.parent.mkdir(parents=True, exist_ok=True)
        with downloading(info.size):
            store.download_file(info.key, download)
        files = [{"key": name, "size": info.size, "etag": info.etag, "sha256": sha256_of(download)}]
        kind = declared if declared != "auto" else _kind_of(name, download)
        if kind in ("zip", "tar"):
            unpacked = dest / "unpacked"
            extract_archive(
                download,
                unpacked,
                self.limits,
                field_name,
                per_class_limit=sample_per_class,
            )
            remove(download)
            return StagedDataset(dataset_root(unpacked), "image_folder", files)
        if kind in ("npz", "tfrecord"):
            return StagedDataset(download, kind, files)
        if kind == "image_folder":
            raise invalid_dataset(
                field_name,
                f"dataset.format is 'image_folder' but {uri} is one file. Point it at the folder "
                "(ending in '/'), or set dataset.format to match the file.",
            )
        raise invalid_dataset(
            field_name,
            f"{uri} is neither a folder nor a file this service reads (.zip, .tar.gz, .tgz, "
            ".tar, .npz, .tfrecord). Set dataset.format, or end a folder's URI with '/'.",
        )

    def _download(
        self, store: ObjectStore, infos: list[ObjectInfo], prefix: str, dest: Path
    ) -> None:
        plan = [(info, local_path_for(dest, info.key[len(prefix) :], info.key)) for info in infos]
        for parent in sorted({path.parent for _, path in plan}):
            parent.mkdir(parents=True, exist_ok=True)
        with downloading(sum(info.size for info in infos)), ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(store.download_file, i.key, p) for i, p in plan]:
                future.result()

    # outputs -----------------------------------------------------------------------------
    def upload_outputs(self, output_uri: str, local_dir: Path, names: list[str]) -> None:
        """Upload ``names`` (files or folders under ``local_dir``) below ``output_uri``.

        A storage outage is waited out (see _through_outages) before the job fails: a short
        outage while publishing must not throw away a finished training run.
        """
        store, prefix = self._storage.open(output_uri)
        for name in names:
            path = local_dir / name
            try:
                if path.is_dir():
                    self._through_outages(partial(store.upload_dir, path, prefix + name + "/"))
                else:
                    self._through_outages(partial(store.upload_file, path, prefix + name))
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

    def open_store(self, uri: str) -> tuple[ObjectStore, str]:
        """The store and key (or prefix) of ``uri``: the publish claim's, the alias's."""
        return self._storage.open(uri)

    def during_publish(self, write: Callable[[], object], what: str) -> None:
        """Run one storage call of the publish, through outages; JobFailure(storage) after."""
        try:
            self._through_outages(write)
        except StorageError as exc:
            raise JobFailure("storage", f"Could not {what}: {exc}.") from exc

    def read_small(self, uri: str, field_name: str, what: str) -> bytes | None:
        """One small object's bytes (an alias, a manifest); None where nothing is there."""
        store, key = self._storage.open(uri)
        try:
            return store.get(key).data
        except NoSuchKey:
            return None
        except StorageError as exc:
            raise _storage_failure(what, uri, exc, field_name) from exc

    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write one small object (the manifest)."""
        store, key = self._storage.open(uri)
        try:
            self._through_outages(partial(store.put, key, data))
        except StorageError as exc:
            raise JobFailure("storage", f"Could not write {uri}: {exc}.") from exc

    def _through_outages(self, write: Callable[[], object]) -> None:
        """Run ``write``; while storage is unreachable, retry by the publish policy.

        Other storage errors (access denied, a missing bucket) fail at once.
        """
        self._publish.call(write, on_retry=_waiting_out)


def _waiting_out(exc: BaseException, tries: int, wait: float) -> None:
    log.warning("storage unreachable while publishing; retrying in %.1f s: %s", wait, exc)


def _kind_of(name: str, local: Path) -> str | None:
    """``zip``, ``tar``, ``npz`` or ``tfrecord`` by name, then by content; None if neither."""
    lower = name.lower()
    if lower.endswith(NPZ_SUFFIX):
        return "npz"
    if lower.endswith(TFRECORD_SUFFIXES):
        return "tfrecord"
    by_name = archive_kind(name)
    if by_name is not None:
        return by_name
    with local.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(ZIP_SIGNATURE):
        import zipfile

        with zipfile.ZipFile(local) as archive:
            names = archive.namelist()
        return "npz" if names and all(n.endswith(".npy") for n in names) else "zip"
    if head.startswith(GZIP_SIGNATURE):
        return "tar"
    return None


def _sample(infos: list[ObjectInfo], prefix: str, per_class: int) -> list[ObjectInfo]:
    """At most ``per_class`` objects per top-level folder below ``prefix``."""
    taken: dict[str, int] = {}
    chosen: list[ObjectInfo] = []
    for info in infos:
        relative = info.key[len(prefix) :]
        folder = relative.split("/", 1)[0] if "/" in relative else ""
        if taken.get(folder, 0) < per_class:
            taken[folder] = taken.get(folder, 0) + 1
            chosen.append(info)
    return chosen


def _listing(infos: list[ObjectInfo], prefix: str) -> list[dict[str, Any]]:
    return [{"key": i.key[len(prefix) :], "size": i.size, "etag": i.etag} for i in infos]
