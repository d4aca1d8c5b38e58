"""Which device trains, and the compile settings measured to be fastest on it.

Backend-neutral: it asks the running Keras backend (TensorFlow, JAX or torch) for its devices,
so the model-building and ``fit`` code runs unchanged under the JAX backend on an accelerator
(bench/gpu/). Nothing here imports TensorFlow unless TensorFlow is the backend.

The choices come from measurements, not assumptions (bench/RESULTS.md, FACTS.md):

- CPU, TensorFlow backend: XLA (``jit_compile=True``) made training 4-14x slower (about 7x in
  bench/RESULTS.md section 1), so a CPU trains without XLA. ``mixed_bfloat16`` measured faster
  on this project's CPU (head only, about 2x, few runs), against the premise that it loses on
  CPUs; the trainer still trains in float32 (see the GPU note below). Under the JAX backend
  ``jit_compile=False`` means running every op eagerly (7x slower than jit in bench/gpu's CPU
  smoke run), so JAX always compiles.
- GPU: XLA as Keras decides (``"auto"``); float32, since bf16 helped ResNet50 on an H100 but
  made MobileNetV2 slower (bench/gpu/ measures both for a given model). A base model loaded from
  a file keeps the dtype policy stored with its layers, so a per-job bf16 switch needs the
  base's layers given the new policy (and float32 back before export, so that artifacts stay
  float32): not done yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import keras

DeviceKind = Literal["cpu", "gpu", "tpu"]


@dataclass(frozen=True)
class CompileSettings:
    """How to compile for a device.

    Attributes:
        device: ``cpu``, ``gpu`` or ``tpu``.
        jit_compile: ``model.compile``'s ``jit_compile``.
        precision: A Keras dtype policy name (``float32``, ``mixed_bfloat16``...).
    """

    device: DeviceKind
    jit_compile: bool | str
    precision: str


def training_device() -> DeviceKind:
    """The kind of device the running Keras backend trains on."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("TPU"):
            return "tpu"
        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "jax":
        import jax

        platform = jax.default_backend()
        if platform == "tpu":
            return "tpu"
        return "gpu" if platform in ("gpu", "cuda", "rocm") else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def compile_settings(device: DeviceKind | None = None) -> CompileSettings:
    """The measured-fastest settings for ``device`` (default: the one training now)."""
    device = device or training_device()
    if device == "cpu" and keras.backend.backend() == "tensorflow":
        return CompileSettings("cpu", jit_compile=False, precision="float32")
    return CompileSettings(device, jit_compile="auto", precision="float32")
