"""Dataset archives: checked member by member before anything is written, then unpacked."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.worker.archives import ArchiveLimits, dataset_root, extract_archive
from service.worker.errors import JobFailure

LIMITS = ArchiveLimits(max_bytes=10_000, max_files=20)


def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def _tar(path: Path, build: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        build(archive)
    return path


def _add(archive: tarfile.TarFile, name: str, data: bytes = b"x", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if fields.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in fields.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(data) if info.size else None)


def _files_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A job's scratch folder inside tmp_path; the tests check nothing lands beside it."""
    (tmp_path / "job").mkdir()
    return tmp_path / "job"


def test_sound_zip_and_tar_unpack_into_the_destination(scratch: Path, tmp_path: Path) -> None:
    members = {"train/a/1.png": b"1", "train/b/2.png": b"22"}
    zipped = _zip(tmp_path / "d.zip", members)
    tarred = _tar(tmp_path / "d.tar.gz", lambda t: [_add(t, n, d) for n, d in members.items()])

    for archive in (zipped, tarred):
        dest = scratch / archive.name
        assert extract_archive(archive, dest, LIMITS, "dataset.train") == 2
        assert (dest / "train" / "b" / "2.png").read_bytes() == b"22"
        assert dataset_root(dest) == dest / "train"


CRAFTED: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "zip_slip": (
        lambda tmp, outside: _zip(tmp / "a.zip", {"a/1.png": b"1", f"../{outside.name}": b"x"}),
        "leads outside",
    ),
    "zip_absolute": (
        lambda tmp, outside: _zip(tmp / "a.zip", {"a/1.png": b"1", str(outside): b"x"}),
        "absolute",
    ),
    "zip_symlink": (
        lambda tmp, outside: _zip(tmp / "a.zip", {"a/1.png": b"1"}, {"a/link": str(outside)}),
        "symbolic link",
    ),
    "zip_bomb": (
        lambda tmp, outside: _zip(
            tmp / "a.zip", {"a/1.png": b"\0" * 6000, "b/2.png": b"\0" * 6000}
        ),
        "FINETUNE_MAX_ARCHIVE_BYTES",
    ),
    "zip_too_many_files": (
        lambda tmp, outside: _zip(tmp / "a.zip", {f"a/{i}.png": b"1" for i in range(21)}),
        "FINETUNE_MAX_ARCHIVE_FILES",
    ),
    "tar_slip": (
        lambda tmp, outside: _tar(tmp / "a.tgz", lambda t: _add(t, f"a/../../{outside.name}")),
        "leads outside",
    ),
    "tar_absolute": (
        lambda tmp, outside: _tar(tmp / "a.tgz", lambda t: _add(t, str(outside))),
        "absolute",
    ),
    "tar_symlink": (
        lambda tmp, outside: _tar(
            tmp / "a.tgz",
            lambda t: _add(t, "a/link", type=tarfile.SYMTYPE, linkname=str(outside)),
        ),
        "symbolic link",
    ),
    "tar_hardlink": (
        lambda tmp, outside: _tar(
            tmp / "a.tgz",
            lambda t: _add(t, "a/link", type=tarfile.LNKTYPE, linkname=str(outside)),
        ),
        "hard link",
    ),
    "tar_fifo": (
        lambda tmp, outside: _tar(
            tmp / "a.tgz", lambda t: _add(t, "a/pipe", type=tarfile.FIFOTYPE)
        ),
        "FIFO",
    ),
    "tar_device": (
        lambda tmp, outside: _tar(tmp / "a.tgz", lambda t: _add(t, "a/dev", type=tarfile.CHRTYPE)),
        "device",
    ),
    "tar_bomb": (
        lambda tmp, outside: _tar(tmp / "a.tgz", lambda t: _add(t, "a/big.png", b"\0" * 20_000)),
        "FINETUNE_MAX_ARCHIVE_BYTES",
    ),
}


@pytest.mark.parametrize("kind", list(CRAFTED))
def test_crafted_archive_is_refused_before_anything_is_written(
    kind: str, scratch: Path, tmp_path: Path
) -> None:
    build, reason = CRAFTED[kind]
    outside = tmp_path / "escaped.txt"
    archive = build(tmp_path, outside)
    before = _files_below(tmp_path)

    with pytest.raises(JobFailure) as info:
        extract_archive(archive, scratch / "unpacked", LIMITS, "dataset.train")

    assert info.value.code == "invalid_dataset"
    assert reason in info.value.message and "dataset.train" in info.value.message
    assert not outside.exists()
    assert _files_below(tmp_path) == before  # nothing written, inside the scratch or out


def test_member_larger_than_its_header_says_is_cut_off(scratch: Path, tmp_path: Path) -> None:
    # A zip whose central directory understates a member's size: the copy enforces the cap.
    archive = _zip(tmp_path / "a.zip", {"a/1.png": b"\0" * 50_000})
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as opened:
        info = opened.infolist()[0]
    lie = (100).to_bytes(4, "little")
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = lie  # uncompressed size in the central directory
    data[info.header_offset + 22 : info.header_offset + 26] = lie  # and in the local header
    archive.write_bytes(bytes(data))

    with pytest.raises(JobFailure) as info:
        extract_archive(archive, scratch / "unpacked", LIMITS, "dataset.train")
    assert info.value.code == "invalid_dataset"
    assert not (scratch / "unpacked").exists()  # the partial copy is gone


def test_sample_unpacks_a_few_files_per_class(scratch: Path, tmp_path: Path) -> None:
    members = {f"train/{c}/{i}.png": b"1" for c in "ab" for i in range(5)}
    archive = _zip(tmp_path / "a.zip", members)

    written = extract_archive(archive, scratch / "s", LIMITS, "dataset.train", per_class_limit=2)

    assert written == 4
    assert sorted(p.name for p in (scratch / "s" / "train" / "b").iterdir()) == ["0.png", "1.png"]


#: Unpacked size of the bombs below: past RATIO_EXEMPT_BYTES, far under the 20 GiB cap.
BOMB_BYTES = 512 * 1024**2


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks: a bomb is built without holding it in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left, 1 << 20)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def _zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/a/1.png", b"\x89PNG small")
        with archive.open("train/b/2.png", "w", force_zip64=True) as member:
            zeros = _Zeros(BOMB_BYTES)
            while chunk := zeros.read(1 << 20):
                member.write(chunk)
    return path


def _tar_bomb(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "train/a/1.png", b"\x89PNG small")
        info = tarfile.TarInfo("train/b/2.png")
        info.size = BOMB_BYTES
        archive.addfile(info, _Zeros(BOMB_BYTES))
    return path


@pytest.mark.parametrize("build", [_zip_bomb, _tar_bomb], ids=["zip", "tar.gz"])
def test_a_small_archive_that_unpacks_huge_is_refused_before_a_byte_is_written(
    build: Callable[[Path], Path], scratch: Path, tmp_path: Path
) -> None:
    archive = build(tmp_path / "bomb")
    assert archive.stat().st_size < BOMB_BYTES / 500  # a real bomb: 512 MiB from about 1 MB
    before = _files_below(tmp_path)

    with pytest.raises(JobFailure) as info:
        extract_archive(archive, scratch / "unpacked", ArchiveLimits(), "dataset.train")

    assert info.value.code == "invalid_dataset"
    assert "FINETUNE_MAX_ARCHIVE_RATIO" in info.value.message
    assert "refused before unpacking" in info.value.message
    assert _files_below(tmp_path) == before  # not even the small member was written


def test_a_dataset_of_incompressible_images_stays_under_the_ratio(
    scratch: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    members = {f"train/{c}/{i}.png": rng.bytes(40_000) for c in "ab" for i in range(4)}
    archive = _zip(tmp_path / "a.zip", members)

    written = extract_archive(archive, scratch / "ok", ArchiveLimits(), "dataset.train")

    assert written == 8
