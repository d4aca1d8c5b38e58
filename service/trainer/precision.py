"""Mixed precision: which policy a job trains with, and the base model rebuilt under it.

``auto`` turns ``mixed_float16`` on where the device gains from it (an NVIDIA GPU of compute
capability 7.0 or more, with tensor cores) and leaves float32 elsewhere (a CPU gains nothing).
Under a mixed policy the variables stay float32; the new output layer always computes in float32,
and so do the exported model's input and output.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from service.trainer.errors import Incompatible

FLOAT32 = "float32"
POLICIES = ("mixed_float16", "mixed_bfloat16")
#: Lowest compute capability where float16 runs on tensor cores (Volta).
MIN_COMPUTE_CAPABILITY = (7, 0)


def resolve_policy(setting: str) -> str:
    """The dtype policy name for ``training.mixed_precision``: float32 or a mixed policy.

    Raises:
        Incompatible: Unknown setting.
    """
    if setting in ("off", FLOAT32):
        return FLOAT32
    if setting in POLICIES:
        return setting
    if setting != "auto":
        raise Incompatible(
            f"training.mixed_precision {setting!r} is not supported; use auto, off, "
            "mixed_float16 or mixed_bfloat16."
        )
    return "mixed_float16" if gpu_gains_from_float16() else FLOAT32


def gpu_gains_from_float16() -> bool:
    """Whether a visible GPU has compute capability 7.0 or more."""
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability is not None and tuple(capability) >= MIN_COMPUTE_CAPABILITY:
            return True
    return False


def apply_policy(base: keras.Model, policy: str) -> keras.Model:
    """Sets the global policy (for the new layers) and returns the base computing under it.

    Layers keep the dtype policy they were saved with, so a base whose layers differ from
    ``policy`` is rebuilt from its configuration with ``policy`` on every layer but the input,
    and given the same weights and trainable flags.
    """
    keras.mixed_precision.set_global_policy(policy)
    if all(_policy_name(layer) in (policy, None) for layer in base.layers):
        return base
    config = base.get_config()
    _set_layer_policies(config, policy)
    try:
        rebuilt = base.__class__.from_config(config)
        rebuilt.set_weights(base.get_weights())
    except Exception as exc:
        raise Incompatible(
            f"training.mixed_precision: the base model could not be rebuilt under {policy} "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); set "
            "training.mixed_precision to 'off'."
        ) from exc
    for old, new in zip(base.layers, rebuilt.layers, strict=True):
        new.trainable = old.trainable
    return rebuilt


def _policy_name(layer: keras.layers.Layer) -> str | None:
    if isinstance(layer, keras.layers.InputLayer):
        return None
    return str(layer.dtype_policy.name)


def _set_layer_policies(config: Any, policy: str) -> None:
    for layer in config.get("layers", []):
        if layer.get("class_name") == "InputLayer":
            continue
        inner = layer.get("config", {})
        if "dtype" in inner:
            inner["dtype"] = {
                "module": "keras",
                "class_name": "DTypePolicy",
                "config": {"name": policy},
                "registered_name": None,
            }
        if "layers" in inner:  # a nested model
            _set_layer_policies(inner, policy)
