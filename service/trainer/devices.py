"""Which device trains, and the compile settings measured to be fastest on it.

Backend-neutral: it asks the running Keras backend (TensorFlow, JAX or torch) for its devices,
so the model-building and ``fit`` code runs unchanged under the JAX backend on an accelerator
(bench/gpu/). Nothing here imports TensorFlow unless TensorFlow is the backend.

The choices come from measurements, not assumptions (bench/RESULTS.md):

- CPU, TensorFlow backend: XLA (``jit_compile=True``) made training 4-14x slower (bench/RESULTS.md
  section 1), so a CPU trains without XLA. Under the JAX backend ``jit_compile=False`` means
  running every op eagerly (7x slower than jit in bench/gpu's CPU smoke run), so JAX always
  compiles.
- GPU: XLA as Keras decides (``"auto"``).

The dtype policy (``training.mixed_precision``) is chosen in precision.py: ``auto`` trains
float32 on a CPU and ``mixed_float16`` on an NVIDIA GPU with tensor cores. On the H100 the issue
measured bf16 helping ResNet50 and hurting MobileNetV2, so a job that knows its model better
sets the policy itself; bench/gpu/ measures both for a given model.
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
    """

    device: DeviceKind
    jit_compile: bool | str


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
        return CompileSettings("cpu", jit_compile=False)
    return CompileSettings(device, jit_compile="auto")
