"""Dataset and model formats, and the file name suffixes that tell them apart.

The worker decides a dataset's format by these names when it stages it; the trainer reads
what was staged by the same names; the schema validates ``dataset.format`` and
``base_model.format`` against these lists.
"""

from __future__ import annotations

import re

#: ``dataset.format`` values a spec may give.
DATASET_FORMATS: tuple[str, ...] = ("auto", "image_folder", "zip", "tar", "npz", "tfrecord")
#: What a staged dataset holds, as the trainer gets it (archives are unpacked to image folders).
STAGED_FORMATS: tuple[str, ...] = ("image_folder", "npz", "tfrecord")
#: ``base_model.format`` values a spec may give.
BASE_MODEL_FORMATS: tuple[str, ...] = ("auto", "keras", "h5", "saved_model")

IMAGE_SUFFIXES: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
TFRECORD_SUFFIXES: tuple[str, ...] = (".tfrecord", ".tfrecords", ".tfrec")
NPZ_SUFFIX = ".npz"
#: Archive kind -> the file name endings that mark it.
ARCHIVE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "zip": (".zip",),
    "tar": (".tar", ".tar.gz", ".tgz"),
}
#: A dataset URI holding one of these is a glob of TFRecord files (``s3://b/train-*.tfrecord``).
GLOB_CHARS = re.compile(r"[*?\[]")


def glob_folder(pattern: str) -> str:
    """The folder to list for a glob key: ``data/train-*.tfrecord`` -> ``data/``."""
    match = GLOB_CHARS.search(pattern)
    head = pattern[: match.start()] if match else pattern
    return head[: head.rfind("/") + 1]
