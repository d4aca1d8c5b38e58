# syntax=docker/dockerfile:1
# The fine-tuning service in one image with three entry points (docs/API.md, "Running"):
#   API alone:  gunicorn -c deploy/gunicorn.conf.py 'service.app:create_app()'   (the default)
#   A worker:   python3 -m service worker
#   Embedded:   python3 -m service serve --host 0.0.0.0
# and the CLI: finetune --help.
#
# BASE_IMAGE defaults to TensorFlow's GPU image of the pinned version: TensorFlow, CUDA and cuDNN
# come from it (pip sees tensorflow==2.21.0 installed and does not fetch it again). Any image with
# Python 3.11 and pip works (scripts/image_test.sh builds on a plain Debian made with debootstrap).
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE_IMAGE}

ARG APP_UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    FINETUNE_WORK_DIR=/var/lib/finetune/work \
    FINETUNE_STATE_URI=file:///var/lib/finetune/state \
    MPLCONFIGDIR=/tmp/matplotlib \
    KERAS_HOME=/tmp/keras \
    CUDA_CACHE_PATH=/tmp/cuda-cache

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY service ./service
COPY deploy/gunicorn.conf.py ./deploy/gunicorn.conf.py
RUN python3 -m pip install --no-cache-dir . \
    && useradd --system --create-home --uid "${APP_UID}" --user-group finetune \
    && mkdir -p /var/lib/finetune/work /var/lib/finetune/state \
    && chown -R finetune:finetune /var/lib/finetune

# Not root: root would ignore the not-dumpable flag that keeps credentials from the trainer.
# The root filesystem can be read-only: the service writes only below /tmp (caches of
# matplotlib, Keras and CUDA, gunicorn's heartbeat files and metrics) and /var/lib/finetune
# (FINETUNE_WORK_DIR, and the embedded default's state): mount those writable.
USER ${APP_UID}
EXPOSE 8080 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "service.app:create_app()"]
