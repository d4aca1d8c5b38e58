"""The ObjectStore interface shared by the S3 and the local-directory backends."""

from __future__ import annotations

import abc
import builtins
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from service.storage.errors import NoSuchKey, StorageError


def first_match(
    keys: Iterable[str], match: Callable[[str], bool] | None, limit: int
) -> bool | None:
    """True at the first key ``match`` accepts (folder markers never), False after the last,
    None once ``limit`` keys went by without one."""
    for seen, key in enumerate(keys):
        if seen >= limit:
            return None
        if not key.endswith("/") and (match is None or match(key)):
            return True
    return False


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes together with the ETag they were read at."""

    data: bytes
    etag: str


@dataclass(frozen=True)
class ObjectInfo:
    """One entry of a listing."""

    key: str
    size: int
    etag: str


class ObjectStore(abc.ABC):
    """Keys and bytes in one bucket (S3) or one directory tree (local).

    Keys are relative, '/'-separated, never starting with '/'. Every conditional method is
    atomic: of two writers racing with the same condition exactly one wins.
    """

    #: A readable name for logs, e.g. ``s3://bucket`` or ``file:///var/lib/finetune``.
    description: str

    @abc.abstractmethod
    def get(self, key: str) -> StoredObject:
        """Read an object. Raises NoSuchKey."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> str:
        """Write unconditionally; returns the new ETag."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create an object only where none exists (``If-None-Match: *``).

        Raises PreconditionFailed where the key already exists.
        """

    @abc.abstractmethod
    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace an object only while it still has ``etag`` (``If-Match``).

        Raises PreconditionFailed where it changed or no longer exists.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete an object; deleting a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in ascending key order."""

    @abc.abstractmethod
    def download_file(self, key: str, path: Path) -> None:
        """Copy an object to a local file, atomically (temporary file, then rename)."""

    @abc.abstractmethod
    def upload_file(self, path: Path, key: str) -> None:
        """Copy a local file to an object."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""
        try:
            self.get(key)
        except NoSuchKey:
            return False
        return True

    def find_any(
        self, prefix: str, match: Callable[[str], bool] | None = None, limit: int = 10_000
    ) -> bool | None:
        """Whether an object below ``prefix`` (whose key ``match`` accepts) is stored.

        Stops at the first one; past ``limit`` keys looked at without one, gives up: None.
        Folder markers (keys ending in '/') do not count.
        """
        return first_match((info.key for info in self.list(prefix)), match, limit)

    def download_prefix(
        self, prefix: str, dest_dir: Path, max_workers: int = 8
    ) -> builtins.list[ObjectInfo]:
        """Download every object below a folder-like prefix into a local directory.

        Keys keep their path relative to ``prefix``: ``models/a/`` + ``b/c.bin`` lands in
        ``dest_dir/b/c.bin``. Folder markers (keys ending in '/') are skipped. Every key is
        checked before anything is written, so a key that would land outside ``dest_dir``
        (through '..', or an absolute part) fails the whole call.

        Args:
            prefix: The folder to copy; a trailing '/' is added where missing, so that
                ``models/a`` never picks up ``models/abc``.
            dest_dir: The local directory to fill; created where missing.
            max_workers: How many objects are downloaded at once.

        Returns:
            The objects downloaded, in ascending key order.

        Raises:
            StorageError: A key would escape ``dest_dir``, or a download failed.
        """
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1. Received: max_workers={max_workers}")
        folder = _as_folder(prefix)
        root = dest_dir.resolve()
        plan: list[tuple[ObjectInfo, Path]] = []
        for info in self.list(folder):
            if info.key.endswith("/"):
                continue
            plan.append((info, _local_path_for(root, info.key[len(folder) :], info.key)))
        root.mkdir(parents=True, exist_ok=True)
        for parent in sorted({path.parent for _, path in plan}):
            parent.mkdir(parents=True, exist_ok=True)
        _run_parallel(
            [partial(self.download_listed, info, path) for info, path in plan],
            max_workers,
        )
        return [info for info, _ in plan]

    def download_listed(self, info: ObjectInfo, path: Path) -> None:
        """Download an object that was just listed; ``info.size`` may pick the transfer.

        Here it is ``download_file``; a store may use a cheaper transfer for small objects.
        """
        self.download_file(info.key, path)

    def upload_dir(self, src_dir: Path, prefix: str, max_workers: int = 8) -> builtins.list[str]:
        """Upload every regular file below a local directory, keeping relative paths.

        Args:
            src_dir: The directory to copy.
            prefix: The folder to copy it to; a trailing '/' is added where missing.
            max_workers: How many files are uploaded at once.

        Returns:
            The keys written, in ascending order.

        Raises:
            StorageError: ``src_dir`` is not a directory, it holds a symbolic link (never
                followed, so that nothing outside ``src_dir`` is published), or an upload failed.
        """
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1. Received: max_workers={max_workers}")
        if not src_dir.is_dir():
            raise StorageError(f"cannot upload {src_dir}: it is not a directory")
        folder = _as_folder(prefix)
        plan: list[tuple[Path, str]] = []
        for dirpath, dirnames, filenames in os.walk(src_dir):
            here = Path(dirpath)
            for name in dirnames + filenames:
                if (here / name).is_symlink():
                    raise StorageError(
                        f"cannot upload {src_dir}: {here / name} is a symbolic link, "
                        "which upload_dir does not follow"
                    )
            for name in filenames:
                path = here / name
                if path.is_file():
                    plan.append((path, folder + path.relative_to(src_dir).as_posix()))
        plan.sort(key=lambda item: item[1])
        _run_parallel(
            [partial(self.upload_file, path, key) for path, key in plan],
            max_workers,
        )
        return [key for _, key in plan]


def _as_folder(prefix: str) -> str:
    """``prefix`` with exactly one trailing '/', or '' for the whole store."""
    return prefix if prefix == "" or prefix.endswith("/") else prefix + "/"


def _local_path_for(root: Path, relative: str, key: str) -> Path:
    """Where ``relative`` lands below ``root``; refuses anything that would escape it."""
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or any(part in ("..", ".") for part in parts):
        raise StorageError(
            f"refusing to download {key!r}: its path {relative!r} would land outside {root}"
        )
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root):
        raise StorageError(f"refusing to download {key!r}: it would be written outside {root}")
    return path


def _run_parallel(tasks: list[Callable[[], None]], max_workers: int) -> None:
    """Run ``tasks`` on a thread pool; the first failure cancels what has not started.

    At most ``2 * max_workers`` tasks are queued at a time: a dataset of thousands of files
    then holds a few futures, not thousands (the worker's peak memory grew with the dataset).
    """
    if not tasks:
        return
    workers = min(max_workers, len(tasks))
    failed: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[None]] = set()
        for task in tasks:
            pending.add(pool.submit(task))
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed = _first_failure(done)
                if failed is not None:
                    break
        if failed is None:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            failed = _first_failure(done)
        for future in pending:
            future.cancel()
    if failed is not None:
        failed.result()


def _first_failure(done: set[Future[None]]) -> Future[None] | None:
    for future in done:
        if not future.cancelled() and future.exception() is not None:
            return future
    return None


def local_path_for(root: Path, relative: str, key: str) -> Path:
    """Where the object ``key`` lands as ``relative`` below ``root``; StorageError if outside."""
    return _local_path_for(root.resolve(), relative, key)
