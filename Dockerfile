# syntax=docker/dockerfile:1
# The fine-tuning service: API (gunicorn), worker, and embedded default in one image.
# BASE_IMAGE defaults to TensorFlow's GPU image of the pinned version; the worker needs the GPU,
# the API runs fine on the same image without one.
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FINETUNE_WORK_DIR=/var/lib/finetune/work \
    FINETUNE_STATE_URI=file:///var/lib/finetune/state

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY service ./service
COPY deploy/gunicorn.conf.py ./deploy/gunicorn.conf.py
RUN python -m pip install --no-cache-dir . \
    && useradd --system --create-home --uid 10001 finetune \
    && mkdir -p /var/lib/finetune \
    && chown -R finetune /var/lib/finetune

USER finetune
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1

# API alone:   gunicorn -c deploy/gunicorn.conf.py 'service.app:create_app()'
# One worker:  python -m service worker
# Embedded:    python -m service serve --host 0.0.0.0
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "service.app:create_app()"]
