#!/usr/bin/env bash
# Builds the Dockerfile for real with buildah, on a local Debian base made with debootstrap, and
# checks the image: the CLI's --help, an import of the API (create_app on local storage, /healthz
# and /docs answered in-process), the non-root user, that TensorFlow stays out of the API, and
# that a fit, a plot and a worker's start write nothing outside /tmp and /var/lib/finetune (the
# volumes of a read-only root filesystem).
#
#   make image-test            (slow: minutes; not part of `make test`)
#
# Needs root (debootstrap, buildah with --storage-driver vfs --isolation chroot) and network
# access to Debian and PyPI. Installs buildah and debootstrap with apt-get where missing.
# IMAGE_TEST_DIR (default /var/tmp/finetune-image-test) keeps the base rootfs and buildah's
# storage between runs; delete it to start from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${IMAGE_TEST_DIR:-/var/tmp/finetune-image-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_TAG=localhost/finetune-debian-base:bookworm
IMAGE_TAG=localhost/finetune:image-test
STORAGE=(--storage-driver vfs --root "$WORK/storage" --runroot "$WORK/runroot")
started=$(date +%s)
say() { printf '[image-test %4ss] %s\n' "$(($(date +%s) - started))" "$*"; }

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing buildah and debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null
fi
mkdir -p "$WORK"

# 1. A minimal Debian bookworm with Python 3.11 and pip, as a local image.
if ! buildah "${STORAGE[@]}" inspect --type image "$BASE_TAG" >/dev/null 2>&1; then
    if [ ! -x "$WORK/rootfs/usr/bin/python3" ] || [ ! -d "$WORK/rootfs/usr/lib/python3/dist-packages/pip" ]; then
        say "debootstrap bookworm into $WORK/rootfs"
        rm -rf "$WORK/rootfs"
        debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
            bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log"; exit 1; }
    fi
    # This machine reaches PyPI through an egress proxy with its own CA: give the base (a test
    # fixture, not the product) the host's trust store so pip inside the build can verify it.
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
    say "importing the rootfs as $BASE_TAG"
    tar -C "$WORK/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$WORK/rootfs.tar" .
    ctr=$(buildah "${STORAGE[@]}" from scratch)
    buildah "${STORAGE[@]}" add "$ctr" "$WORK/rootfs.tar" /
    buildah "${STORAGE[@]}" config --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        --cmd /bin/bash "$ctr"
    buildah "${STORAGE[@]}" commit --quiet "$ctr" "$BASE_TAG" >/dev/null
    buildah "${STORAGE[@]}" rm "$ctr" >/dev/null
    rm -f "$WORK/rootfs.tar"
fi

# 2. The service image, from the Dockerfile as it is.
say "buildah build --build-arg BASE_IMAGE=$BASE_TAG"
buildah "${STORAGE[@]}" build --isolation chroot --layers=false --format docker \
    --build-arg BASE_IMAGE="$BASE_TAG" -t "$IMAGE_TAG" -f Dockerfile . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
say "built $IMAGE_TAG"

# 3. Checks inside the image, as its own (non-root) user.
ctr=$(buildah "${STORAGE[@]}" from "$IMAGE_TAG")
trap 'buildah "${STORAGE[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
run() { buildah "${STORAGE[@]}" run --isolation chroot "$ctr" -- "$@"; }

user=$(buildah "${STORAGE[@]}" inspect --format '{{.OCIv1.Config.User}}' "$IMAGE_TAG")
[ "$user" = "10001" ] || { echo "image user is '$user', expected 10001"; exit 1; }
health=$(buildah "${STORAGE[@]}" inspect --format '{{.Docker.Config.Healthcheck.Test}}' "$IMAGE_TAG")
[[ "$health" == *"/healthz"* ]] || { echo "no health check on /healthz in the image: '$health'"; exit 1; }
[ "$(run id -u)" = "10001" ] || { echo "commands do not run as uid 10001"; exit 1; }
# Everything below may write only where the manifests mount writable volumes (the root
# filesystem is read-only there): /tmp and /var/lib/finetune. A marker dates the checks' writes.
run touch /var/lib/finetune/.checks-started
run finetune --help | grep -q "exit codes:" || { echo "finetune --help failed"; exit 1; }
run python3 -m service --help >/dev/null
run python3 - <<'PY'
import sys, tempfile
from service.app import create_app
from service.config import Config

app = create_app(Config(state_uri="file://" + tempfile.mkdtemp(), work_dir=tempfile.gettempdir()))
client = app.test_client()
assert client.get("/healthz").status_code == 200
docs = client.get("/docs")
assert docs.status_code == 200 and b"/docs/assets/swagger-ui-bundle.js" in docs.data
assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
assert b"finetune_queue_depth" in client.get("/metrics").data
assert "tensorflow" not in sys.modules, "the API imported TensorFlow"
print("API import and requests: ok")
PY
run python3 -c "import tensorflow as tf, keras; print('trainer libraries:', tf.__version__, keras.__version__)"
run python3 - <<'PY'
import keras, matplotlib.pyplot as plt, numpy as np

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(np.zeros((8, 4)), np.zeros(8), epochs=1, verbose=0)  # Keras' config, TF's caches
plt.plot([0, 1])
plt.savefig("/tmp/plot.png")  # matplotlib's font cache
print("a tiny fit and a plot: ok")
PY
# The worker starts (warm trainer: TensorFlow imported in its child), polls, stops on SIGTERM.
run timeout --signal=TERM --kill-after=30 40 python3 -m service worker || [ $? -eq 124 ]
# Folders the user cannot read it cannot write either: find's complaints about them are dropped.
# /run and /etc/{hosts,hostname,resolv.conf} are the container runtime's, written on each run.
outside=$(run sh -c 'find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp \
    -o -path /var/lib/finetune -o -path /run -o -path /etc/hosts -o -path /etc/hostname \
    -o -path /etc/resolv.conf \) -prune -o -newer /var/lib/finetune/.checks-started -print \
    2>/dev/null; true')
[ -z "$outside" ] || { echo "written outside /tmp and /var/lib/finetune:"; echo "$outside"; exit 1; }
say "nothing written outside /tmp and /var/lib/finetune: a read-only root filesystem holds"
say "image test passed"
