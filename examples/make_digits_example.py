"""Writes the README walk-through's inputs: a tiny pretrained CNN and a digits image folder.

    .venv/bin/python examples/make_digits_example.py /absolute/path/example

writes ``base/model.keras`` (a small CNN pretrained on the digits 5-9, pixels 0-1, its pooled
features in the layer named ``gap``) and ``digits/train/digit{0..3}/*.png`` (32x32 RGB).
It reuses the generators the tests use (scikit-learn's bundled digits; no download).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn


def main() -> None:
    """Parse the target folder and write the files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="Folder to write into (created).")
    root = parser.parse_args().root.resolve()
    pretrain_tiny_cnn(root / "base" / "model.keras", epochs=6)
    write_image_folder(
        root / "digits" / "train",
        [f"digit{d}" for d in range(4)],
        per_class=60,
        seed=1,
        digits=[0, 1, 2, 3],
    )
    print(f"wrote {root}/base/model.keras and {root}/digits/train/")


if __name__ == "__main__":
    main()
