"""Unpacking dataset archives (``.zip``, ``.tar``, ``.tar.gz``) safely into a job's scratch folder.

An archive from a client is untrusted. Every member is checked BEFORE anything is written:

- its name must stay inside the destination: no absolute path, no ``..``, no backslash, no drive;
- only regular files and folders: symbolic and hard links, devices and FIFOs are refused;
- the members' total unpacked size and their count must stay under ArchiveLimits
  (``FINETUNE_MAX_ARCHIVE_BYTES``, ``FINETUNE_MAX_ARCHIVE_FILES``), and the size they declare
  may be at most ``FINETUNE_MAX_ARCHIVE_RATIO`` times the archive's own (for a zip, each
  member's too), so a small archive cannot fill the disk (a "zip bomb": 3 MB that unpack to
  3 GiB); the sizes are enforced again while copying, so a member whose header understates its
  size cannot either. Images barely compress, so real datasets are far below the ratio.

Anything refused fails the job with ``invalid_dataset`` and a message naming the member. Files are
written only below the destination folder, which the worker puts inside the job's scratch folder.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from service.contract.formats import ARCHIVE_SUFFIXES
from service.worker.errors import JobFailure

ZIP_SIGNATURE = b"PK\x03\x04"
#: Below this many unpacked bytes no compression ratio is refused: nothing that small can hurt,
#: and a few blank images or a small .npz of zeros may well compress 1000 to 1.
RATIO_EXEMPT_BYTES = 64 * 1024**2
GZIP_SIGNATURE = b"\x1f\x8b"
#: Folders that archivers add and that are no class: macOS resource forks.
IGNORED_FOLDERS = ("__MACOSX",)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what one archive may unpack to.

    Attributes:
        max_bytes: Total unpacked bytes (default 20 GiB).
        max_files: Number of members (default 1,000,000).
        max_ratio: Most unpacked bytes per archive byte (default 100), past
            ``RATIO_EXEMPT_BYTES``.
    """

    max_bytes: int = 20 * 1024**3
    max_files: int = 1_000_000
    max_ratio: float = 100.0

    def unpacked_cap(self, packed_bytes: int) -> int:
        """The most bytes an archive of ``packed_bytes`` may unpack to."""
        by_ratio = max(RATIO_EXEMPT_BYTES, int(self.max_ratio * packed_bytes))
        return min(self.max_bytes, by_ratio)


@dataclass(frozen=True)
class _Member:
    name: str  # normalized, relative, '/'-separated
    is_dir: bool
    size: int
    open: Callable[[], IO[bytes]]
    packed_size: int | None = None  # a zip member's compressed size; None in a tar


def archive_kind(name: str) -> str | None:
    """``zip`` or ``tar`` by file name (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``), else None."""
    lower = name.lower()
    return next((kind for kind, ends in ARCHIVE_SUFFIXES.items() if lower.endswith(ends)), None)


def extract_archive(
    archive: Path,
    dest: Path,
    limits: ArchiveLimits,
    field: str,
    per_class_limit: int | None = None,
) -> int:
    """Checks every member of ``archive``, then unpacks it below ``dest``.

    Args:
        archive: A local ``.zip`` or tar file (plain or gzip'd; the content decides).
        dest: The folder to unpack into (created); nothing is written outside it.
        limits: Caps on the unpacked size and the member count.
        field: The spec field the archive came from, for messages.
        per_class_limit: Unpack at most this many files per folder (a sample for the
            dry run); None unpacks everything. Every member is checked either way.

    Returns:
        The number of files written.

    Raises:
        JobFailure: ``invalid_dataset``, naming the member that was refused and why.
    """
    with _members(archive, field) as members:
        checked = _check_all(members, limits, field)
        cap = limits.unpacked_cap(archive.stat().st_size)
        _check_ratio(checked, cap, limits, field)
        dest.mkdir(parents=True, exist_ok=True)
        try:
            written = _write_all(checked, dest.resolve(), cap, limits, field, per_class_limit)
        except Exception as exc:
            shutil.rmtree(dest, ignore_errors=True)  # no half-unpacked dataset stays behind
            if isinstance(exc, JobFailure):
                raise
            raise invalid_dataset(
                field,
                f"the archive is damaged and could not be unpacked ({exc}).",
            ) from exc
    return written


def invalid_dataset(field: str, message: str) -> JobFailure:
    """An ``invalid_dataset`` failure of the spec field ``field``, its message led by the name."""
    return JobFailure("invalid_dataset", f"{field}: {message}", field=field)


def _check_ratio(checked: list[_Member], cap: int, limits: ArchiveLimits, field: str) -> None:
    """Refuse, before anything is written, what unpacks to far more than the archive holds."""
    total = sum(member.size for member in checked)
    bomb = next(
        (
            m
            for m in checked
            if m.packed_size is not None
            and m.size > RATIO_EXEMPT_BYTES
            and m.size > limits.max_ratio * max(m.packed_size, 1)
        ),
        None,
    )
    if total <= cap and bomb is None:
        return
    what = (
        f"its member {bomb.name[:200]!r} unpacks to {bomb.size} bytes from {bomb.packed_size}"
        if bomb is not None
        else f"it declares {total} unpacked bytes, more than {cap}"
    )
    raise invalid_dataset(
        field,
        f"the archive was refused before unpacking: {what}, a compression ratio above "
        f"{limits.max_ratio:g} to 1 (FINETUNE_MAX_ARCHIVE_RATIO), which no image dataset "
        "reaches. Upload the images as they are, or a folder as a prefix.",
    )


def _write_all(
    checked: list[_Member],
    root: Path,
    budget: int,
    limits: ArchiveLimits,
    field: str,
    per_class_limit: int | None,
) -> int:
    written = 0
    per_folder: dict[str, int] = {}
    for member in checked:
        target = root.joinpath(*PurePosixPath(member.name).parts)
        if not target.resolve().is_relative_to(root):  # checked already; never write out
            raise _refused(field, member.name, "its path leads outside the archive's folder")
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        if per_class_limit is not None:
            folder = str(PurePosixPath(member.name).parent)  # the class folder
            if per_folder.get(folder, 0) >= per_class_limit:
                continue
            per_folder[folder] = per_folder.get(folder, 0) + 1
        target.parent.mkdir(parents=True, exist_ok=True)
        budget -= _copy_capped(member, target, budget, limits, field)
        written += 1
    return written


def _check_all(
    members: Iterator[_Member | str], limits: ArchiveLimits, field: str
) -> list[_Member]:
    checked: list[_Member] = []
    total = 0
    for member in members:
        if isinstance(member, str):  # a refusal reason from the reader
            raise _refused(field, *member.split("\0", 1))
        _check_name(member.name, field)
        if PurePosixPath(member.name).parts[0] in IGNORED_FOLDERS:
            continue
        checked.append(member)
        total += member.size
        if len(checked) > limits.max_files:
            raise invalid_dataset(
                field,
                f"the archive holds more than {limits.max_files} files, the most this "
                "service unpacks (FINETUNE_MAX_ARCHIVE_FILES). Split the dataset or upload the "
                "folder itself as a prefix.",
            )
        if total > limits.max_bytes:
            raise invalid_dataset(
                field,
                f"the archive unpacks to more than {limits.max_bytes} bytes, the most "
                "this service unpacks (FINETUNE_MAX_ARCHIVE_BYTES). Upload the folder itself as "
                "a prefix, or a smaller archive.",
            )
    if not any(not m.is_dir for m in checked):
        raise invalid_dataset(field, "the archive holds no files.")
    return checked


def _check_name(name: str, field: str) -> None:
    path = PurePosixPath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
        or any(part == ".." for part in path.parts)
        or "\0" in name
    ):
        raise _refused(field, name, "its path is absolute or leads outside the archive's folder")


def _refused(field: str, name: str, why: str) -> JobFailure:
    return invalid_dataset(
        field,
        f"the archive's member {name[:200]!r} was refused: {why}. Archives may hold only "
        "plain files and folders with relative paths; nothing was unpacked.",
    )


def _copy_capped(
    member: _Member, target: Path, budget: int, limits: ArchiveLimits, field: str
) -> int:
    copied = 0
    with member.open() as source, target.open("wb") as sink:
        while chunk := source.read(_CHUNK):
            copied += len(chunk)
            if copied > member.size or copied > budget:
                sink.close()
                target.unlink(missing_ok=True)
                raise invalid_dataset(
                    field,
                    f"the archive's member {member.name!r} unpacks to more than its "
                    f"header says, or past {budget} bytes in all (FINETUNE_MAX_ARCHIVE_BYTES, "
                    "FINETUNE_MAX_ARCHIVE_RATIO); the archive is refused.",
                )
            sink.write(chunk)
    return copied


@contextmanager
def _members(archive: Path, field: str) -> Iterator[Iterator[_Member | str]]:
    with archive.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(ZIP_SIGNATURE):
        try:
            with zipfile.ZipFile(archive) as opened:
                yield _zip_members(opened)
        except zipfile.BadZipFile as exc:
            raise invalid_dataset(
                field, f"the file is not a readable zip archive ({exc})."
            ) from exc
        return
    try:
        with tarfile.open(archive, mode="r:*") as opened:
            yield _tar_members(opened)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise invalid_dataset(
            field,
            f"the file is neither a zip nor a readable tar / tar.gz archive ({exc}).",
        ) from exc


def _zip_members(opened: zipfile.ZipFile) -> Iterator[_Member | str]:
    for info in opened.infolist():
        name = info.filename
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            yield f"{name}\0it is a symbolic link"
            return
        # Many zip writers store permissions only (no file type): those are plain files.
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            yield f"{name}\0it is not a plain file or folder"
            return
        yield _Member(
            name.removeprefix("./").rstrip("/") or name,
            info.is_dir(),
            info.file_size,
            lambda info=info: opened.open(info),  # type: ignore[misc]
            packed_size=info.compress_size,
        )


def _tar_members(opened: tarfile.TarFile) -> Iterator[_Member | str]:
    while (info := opened.next()) is not None:
        name = info.name.removeprefix("./")
        if info.issym() or info.islnk():
            yield f"{info.name}\0it is a {'symbolic' if info.issym() else 'hard'} link"
            return
        if not (info.isfile() or info.isdir()):
            yield f"{info.name}\0it is a device, FIFO or other special file"
            return
        if name in ("", "."):
            continue

        def open_member(info: tarfile.TarInfo = info) -> IO[bytes]:
            extracted = opened.extractfile(info)
            assert extracted is not None
            return extracted

        yield _Member(name.rstrip("/"), info.isdir(), info.size, open_member)


def dataset_root(folder: Path) -> Path:
    """The folder that holds the class folders: descends through single wrapping folders.

    An archive of ``train/cats/1.jpg, train/dogs/2.jpg`` unpacks to ``train/``; the classes are
    one level down.
    """
    current = folder
    for _ in range(8):
        entries = [e for e in current.iterdir() if not e.name.startswith(".")]
        subfolders = [e for e in entries if e.is_dir()]
        if len(entries) == 1 and len(subfolders) == 1:
            inner = subfolders[0]
            if any(e.is_dir() for e in inner.iterdir()):
                current = inner
                continue
        break
    return current


def remove(path: Path) -> None:
    """Delete a file or folder (the archive once unpacked)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
