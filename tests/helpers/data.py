"""Small image datasets on disk: digit images, one folder per class, written as PNG files.

The digits are scikit-learn's ``load_digits()`` (real handwriting, 8x8, upscaled) where
scikit-learn is installed, else digits drawn with Pillow's built-in font at random sizes, offsets
and angles. Either way each class looks different from the others but no two images are alike,
so a small CNN learns them in a few epochs. Colours are random per image (RGB).
No TensorFlow here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def digit_source() -> str:
    """``sklearn`` where scikit-learn's digits are available, else ``drawn``."""
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return "drawn"
    return "sklearn"


def digit_images(
    digits: Sequence[int], per_class: int, size: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images of the given digits.

    Args:
        digits: The digits (0-9), one class each.
        per_class: Images per digit.
        size: Height and width in pixels.
        seed: Same seed, same images.

    Returns:
        (images uint8 (n, size, size, 3), labels int64 (n,) indexing ``digits``), in class order.
    """
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    labels: list[int] = []
    source = digit_source()
    for label, digit in enumerate(digits):
        if not 0 <= digit <= 9:
            raise ValueError(f"digits must be 0-9. Received: {digit}")
        for _ in range(per_class):
            if source == "sklearn":
                mask = _sklearn_digit(digit, size, rng)
            else:
                mask = _drawn_digit(digit, size, rng)
            images.append(_colourize(mask, rng))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def write_image_folder(
    root: Path,
    classes: Sequence[str],
    per_class: int,
    size: int = 32,
    seed: int = 0,
    digits: Sequence[int] | None = None,
    image_format: str = "png",
) -> Path:
    """Writes ``root/<class>/<n>.png`` for every class.

    Args:
        root: The dataset folder (created).
        classes: Class (folder) names. A one-digit name shows that digit; other names show
            digits 0, 1, 2... in order, unless ``digits`` says which.
        per_class: Images per class.
        size: Height and width in pixels.
        seed: Same seed, same images.
        digits: The digit each class shows, one per class.
        image_format: ``png`` or ``jpeg``.

    Returns:
        ``root``.
    """
    if digits is None:
        digits = [
            int(name) if len(name) == 1 and name.isdigit() else index % 10
            for index, name in enumerate(classes)
        ]
    if len(digits) != len(classes):
        raise ValueError(f"digits needs one digit per class. Received: {digits}")
    images, labels = digit_images(digits, per_class, size=size, seed=seed)
    suffix = "jpg" if image_format == "jpeg" else image_format
    root.mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / classes[label]
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.{suffix}", format=image_format.upper())
    return root


@functools.cache
def _sklearn_bank() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target


def _sklearn_digit(digit: int, size: int, rng: np.random.Generator) -> np.ndarray:
    images, targets = _sklearn_bank()
    pool = np.flatnonzero(targets == digit)
    small = images[rng.choice(pool)]
    big = Image.fromarray((small * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    # A shift of up to an eighth of the image, so repeated picks still differ.
    shift = rng.integers(-size // 8, size // 8 + 1, size=2)
    shifted: np.ndarray = np.roll(np.asarray(big, dtype=np.float32) / 255.0, tuple(shift), (0, 1))
    return shifted


def _drawn_digit(digit: int, size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = Image.new("L", (size * 2, size * 2), 0)
    font = ImageFont.load_default(size=float(rng.uniform(0.9, 1.2) * size))
    ImageDraw.Draw(canvas).text(
        (size + rng.uniform(-0.1, 0.1) * size, size + rng.uniform(-0.1, 0.1) * size),
        str(digit),
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=int(rng.integers(0, 3)),
        stroke_fill=255,
    )
    canvas = canvas.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR)
    small = canvas.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32) / 255.0


def _colourize(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey mask (0-1) as RGB: random dark background, random bright ink, a little noise."""
    background = rng.uniform(0, 90, size=3)
    ink = rng.uniform(150, 255, size=3)
    rgb = background + (ink - background) * mask[..., None]
    rgb += rng.normal(0, 8, size=rgb.shape)
    image: np.ndarray = np.clip(rgb, 0, 255).astype(np.uint8)
    return image


def write_npz(
    path: Path,
    digits: Sequence[int],
    per_class: int,
    size: int = 32,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> Path:
    """An ``.npz`` with ``x`` (uint8 (n, size, size, 3)) and ``y`` (class indices)."""
    images, labels = digit_images(digits, per_class, size=size, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {} if class_names is None else {"class_names": np.asarray(class_names)}
    np.savez(path, x=images, y=labels, **extra)
    return path


def write_tfrecords(
    folder: Path,
    digits: Sequence[int],
    per_class: int,
    shards: int = 2,
    size: int = 32,
    seed: int = 0,
    name: str = "train",
) -> list[Path]:
    """TFRecord shards of ``tf.train.Example``s: ``image`` (PNG bytes) and ``label`` (int64).

    Imports TensorFlow (only the writer needs it).
    """
    import io

    import tensorflow as tf

    images, labels = digit_images(digits, per_class, size=size, seed=seed)
    order = np.random.default_rng(seed).permutation(len(labels))
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    for position, index in enumerate(order):
        encoded = io.BytesIO()
        Image.fromarray(images[index]).save(encoded, format="PNG")
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    "image": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[encoded.getvalue()])
                    ),
                    "label": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[int(labels[index])])
                    ),
                }
            )
        )
        writers[position % shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return paths


def write_archive(folder: Path, path: Path, wrap: str | None = None) -> Path:
    """``folder``'s files as a ``.zip`` or ``.tar.gz`` (by ``path``'s name).

    Args:
        folder: The class-per-folder dataset.
        path: The archive to write.
        wrap: A top folder to put everything in (``train/cats/...``); None for none.
    """
    import tarfile
    import zipfile

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    names = [(f"{wrap}/" if wrap else "") + file.relative_to(folder).as_posix() for file in files]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            for file, name in zip(files, names, strict=True):
                archive.write(file, name)
    else:
        with tarfile.open(path, "w:gz") as archive:
            for file, name in zip(files, names, strict=True):
                archive.add(file, name)
    return path
