#!/usr/bin/env bash
# Downloads the wheels the GPU machine lacks (Keras and the two of its needs not in the device
# image) into .whl/ at the repository root, which git ignores (.git/info/exclude), for `carry`.
# The device runs Python 3.12 on x86-64; its image already has jax, numpy, h5py, ml-dtypes,
# absl-py, rich and packaging (see /work/.library/device/KINDS.md).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-common-dir)/info/exclude"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0
ls -la .whl
