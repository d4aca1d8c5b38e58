"""The ObjectStore backend for a local directory tree, with S3's conditional-write semantics."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import BinaryIO

from service.storage.base import ObjectInfo, ObjectStore, StoredObject, first_match
from service.storage.errors import InvalidKey, NoSuchKey, PreconditionFailed, StorageError

#: Every temporary file starts with this; listings skip them and keys may not use it.
TEMP_PREFIX = ".tmp-"
LOCK_DIR_NAME = ".locks"
_CHUNK = 1024 * 1024
# link(2) is refused on filesystems without hard links (some FUSE, SMB, FAT mounts).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


class LocalObjectStore(ObjectStore):
    """Objects as files below a root directory; safe for many threads and processes.

    Every write goes to a temporary file in the target's directory, is flushed to disk and
    renamed into place, so readers see an old or a new object, never half of one. Writes to a
    key hold an exclusive ``flock`` on that key's lock file, which makes ``put_if_match`` a
    compare-and-swap across processes; ``put_if_absent`` also creates with ``link(2)``, which
    fails where the name exists. The ETag is the MD5 of the content, as S3 gives for a
    single-part upload.

    Args:
        root: The directory holding the objects; created on the first write.
        lock_dir: Where per-key lock files live; defaults to ``root/.locks``. Every process
            sharing ``root`` must use the same one.
    """

    def __init__(self, root: Path, lock_dir: Path | None = None) -> None:
        self.root = Path(root).absolute()
        self.lock_dir = Path(lock_dir).absolute() if lock_dir else self.root / LOCK_DIR_NAME
        self.description = f"file://{self.root.as_posix()}"
        self._etag_cache: dict[tuple[int, int, int, int, int], str] = {}
        self._etag_cache_lock = threading.Lock()

    def get(self, key: str) -> StoredObject:
        """Read an object.

        Raises:
            NoSuchKey: No regular file is stored at ``key``.
            StorageError: The file cannot be read (permissions).
        """
        path = self._path(key)
        try:
            if not S_ISREG(path.stat().st_mode):
                raise NoSuchKey(key)  # a device, a socket, a pipe: no object (and no end)
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NoSuchKey(key) from exc
        except OSError as exc:
            raise StorageError(f"{key} cannot be read: {exc.strerror or exc}.") from exc
        return StoredObject(data=data, etag=hashlib.md5(data).hexdigest())

    def put(self, key: str, data: bytes) -> str:
        """Write unconditionally; returns the new ETag."""
        path = self._path(key)
        with self._locked(key):
            self._replace(path, _bytes_writer(data))
        return hashlib.md5(data).hexdigest()

    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create an object only where none exists.

        Raises:
            PreconditionFailed: The key already exists.
        """
        path = self._path(key)
        with self._locked(key):
            temporary = self._write_temporary(path, _bytes_writer(data))
            try:
                os.link(temporary, path)
            except FileExistsError as exc:
                raise PreconditionFailed(key) from exc
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                # No hard links here: the key's lock still makes check-then-rename atomic
                # for every writer that goes through this class.
                if path.exists():
                    raise PreconditionFailed(key) from exc
                os.replace(temporary, path)
            finally:
                _discard(temporary)
            _fsync_directory(path.parent)
        return hashlib.md5(data).hexdigest()

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace an object only while it still has ``etag``.

        Raises:
            PreconditionFailed: The object changed or no longer exists.
        """
        path = self._path(key)
        with self._locked(key):
            try:
                current = _md5_of_file(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise PreconditionFailed(key) from exc
            if current != etag.strip('"'):
                raise PreconditionFailed(key)
            self._replace(path, _bytes_writer(data))
        return hashlib.md5(data).hexdigest()

    def delete(self, key: str) -> None:
        """Delete an object; deleting a missing key is not an error.

        Emptied directories are left in place: removing them would race with a writer
        creating a file in them.
        """
        path = self._path(key)
        with self._locked(key):
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return  # a directory is no object: the key names a folder, not an object
            _fsync_directory(path.parent)

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in ascending key order (UTF-8, as S3)."""
        directory = self._directory_of(prefix)
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(directory):
            here = Path(dirpath)
            dirnames[:] = [name for name in dirnames if here / name != self.lock_dir]
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    continue
                key = (here / name).relative_to(self.root).as_posix()
                if key.startswith(prefix) and key > start_after:
                    keys.append(key)
        keys.sort(key=lambda key: key.encode("utf-8"))
        for key in keys:
            path = self.root / key
            try:
                stat = path.lstat()
                if not S_ISREG(stat.st_mode):
                    continue  # links, sockets, devices: not objects this store wrote
                etag = self._cached_etag(path, stat)
            except FileNotFoundError:
                continue  # deleted since the walk
            except OSError as exc:
                raise StorageError(f"{key} cannot be read: {exc.strerror or exc}.") from exc
            yield ObjectInfo(key=key, size=stat.st_size, etag=etag)

    def _directory_of(self, prefix: str) -> Path:
        """The deepest directory ``prefix`` names: walk it, then filter on the rest."""
        parts = PurePosixPath(prefix).parts
        if prefix.startswith("/") or ".." in parts:
            raise InvalidKey(f"A prefix must be a relative path without '..'. Received: {prefix!r}")
        return self.root.joinpath(*(parts if prefix.endswith("/") else parts[:-1]))

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""
        return self._path(key).is_file()

    def find_any(
        self, prefix: str, match: Callable[[str], bool] | None = None, limit: int = 10_000
    ) -> bool | None:
        """Whether a file below ``prefix`` (whose key ``match`` accepts) is stored.

        Walks lazily and stops at the first one (``list`` walks the whole tree and sorts it:
        ``file:///`` would walk the disk); past ``limit`` files without one, gives up: None.
        """
        return first_match(self._walk_keys(prefix), match, limit)

    def _walk_keys(self, prefix: str) -> Iterator[str]:
        """Keys below ``prefix`` as the walk meets them (unsorted), temporary files left out."""
        for dirpath, dirnames, filenames in os.walk(self._directory_of(prefix)):
            here = Path(dirpath)
            dirnames[:] = [name for name in dirnames if here / name != self.lock_dir]
            for name in filenames:
                key = (here / name).relative_to(self.root).as_posix()
                if not name.startswith(TEMP_PREFIX) and key.startswith(prefix):
                    yield key

    def download_file(self, key: str, path: Path) -> None:
        """Copy an object to a local file through a temporary file in the same directory.

        Raises:
            NoSuchKey: Nothing is stored at ``key``.
        """
        source = self._path(key)
        path = Path(path)
        temporary = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            if not source.is_file():
                raise NoSuchKey(key) from exc
            raise
        finally:
            _discard(temporary)

    def upload_file(self, path: Path, key: str) -> None:
        """Copy a local file to an object."""
        target = self._path(key)

        def copy(out: BinaryIO) -> None:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, out, _CHUNK)

        with self._locked(key):
            self._replace(target, copy)

    def _path(self, key: str) -> Path:
        """The file of ``key``; refuses keys that are not plain relative paths."""
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or "\\" in key
            or "\0" in key
            or any(part in ("", ".", "..") for part in parts)
            or any(part.startswith(TEMP_PREFIX) for part in parts)
        ):
            raise InvalidKey(
                "A key must be a relative '/'-separated path without empty, '.' or '..' parts, "
                f"not ending in '/', and with no part starting with {TEMP_PREFIX!r}. "
                f"Received: key={key!r}"
            )
        path = self.root.joinpath(*parts)
        if path == self.lock_dir or self.lock_dir in path.parents:
            raise InvalidKey(f"Keys below the lock directory are reserved. Received: key={key!r}")
        return path

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Hold the exclusive lock of ``key`` (threads and processes alike)."""
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        lock_path = self.lock_dir / digest[:2] / digest
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # flock locks belong to the open file description, so two threads of one
            # process, each with its own descriptor, exclude each other too.
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _replace(self, path: Path, write: Callable[[BinaryIO], None]) -> None:
        """Write a temporary file beside ``path`` and rename it over ``path``."""
        temporary = self._write_temporary(path, write)
        try:
            os.replace(temporary, path)
        except OSError as exc:
            _discard(temporary)
            raise StorageError(f"could not write {path}: {exc}") from exc
        _fsync_directory(path.parent)

    def _write_temporary(self, path: Path, write: Callable[[BinaryIO], None]) -> Path:
        """A flushed, fsynced temporary file in ``path``'s directory holding the new content."""
        temporary = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "xb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            _discard(temporary)
            raise StorageError(f"could not write {path}: {exc}") from exc
        except BaseException:
            _discard(temporary)
            raise
        return temporary

    def _cached_etag(self, path: Path, stat: os.stat_result) -> str:
        """The MD5 of ``path``, remembered while its inode, size and times are unchanged."""
        # Every write here makes a new inode, so this identity changes whenever the content does.
        identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        with self._etag_cache_lock:
            cached = self._etag_cache.get(identity)
        if cached is None:
            cached = _md5_of_file(path)
            with self._etag_cache_lock:
                if len(self._etag_cache) > 100_000:
                    self._etag_cache.clear()
                self._etag_cache[identity] = cached
        return cached


def _bytes_writer(data: bytes) -> Callable[[BinaryIO], None]:
    """A writer callback that writes ``data``."""

    def write(out: BinaryIO) -> None:
        out.write(data)

    return write


def _md5_of_file(path: Path) -> str:
    """The hex MD5 of a file's content, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry (a rename or a link) to disk."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename itself is atomic
    finally:
        os.close(descriptor)


def _discard(path: Path) -> None:
    """Remove a temporary file where it exists; cleanup never hides the original error."""
    with contextlib.suppress(OSError):
        path.unlink()
