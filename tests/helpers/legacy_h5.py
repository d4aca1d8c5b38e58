"""Keras 2 ``.h5`` files of older eras, made by editing the stored config of a Keras 3 ``.h5``.

The weights stay as Keras 3 wrote them (the legacy ``model_weights`` layout Keras 2 wrote too);
the ``model_config`` attribute and the ``keras_version`` are rewritten as each era stored them:

- ``tf.keras-2.x`` (TensorFlow 2.4-2.15): root class ``Functional``; no ``module`` or
  ``registered_name`` keys; ``batch_input_shape``; dtypes as plain strings; inbound nodes as
  ``[[["layer", 0, 0, {}]]]``; keras_version ``2.9.0``.
- ``keras-2.2`` (standalone Keras 2.0-2.3, e.g. 2.2.4): as above, root class ``Model``, the
  ``glorot_uniform`` initializer stored as ``VarianceScaling(scale=1, fan_avg, uniform)``, no
  config keys that Keras 2.2 did not write (``groups``, ``synchronized``, ``ragged``...);
  keras_version ``2.2.4``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py

ERAS = {"tf.keras-2.x": "2.9.0", "keras-2.2": "2.2.4"}
#: Config keys Keras 3 writes that no Keras 2 wrote (dropped in every era).
_KERAS3_ONLY = (
    "optional",
    "lora_rank",
    "lora_alpha",
    "quantization_config",
    "input_axes",
    "output_axes",
)
#: Keys tf.keras 2.x wrote and Keras 2.0-2.3 did not.
_NOT_IN_KERAS_22 = ("groups", "synchronized", "ragged")


def to_keras2_era(source: Path, target: Path, era: str) -> Path:
    """Copies the Keras 3 ``.h5`` ``source`` to ``target`` with its config as ``era`` wrote it."""
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        config["class_name"] = "Model" if era == "keras-2.2" else "Functional"
        for layer in config["config"]["layers"]:
            _layer(layer, era)
        handle.attrs["model_config"] = json.dumps(_strip(config["config"] and config, era))
        handle.attrs["keras_version"] = ERAS[era]
        handle.attrs["backend"] = "tensorflow"
    return target


def _layer(layer: dict[str, Any], era: str) -> None:
    inner = layer["config"]
    if layer["class_name"] == "InputLayer":
        inner["batch_input_shape"] = inner.pop("batch_shape")
    layer["inbound_nodes"] = [
        [[*arg["config"]["keras_history"], node["kwargs"]] for arg in node["args"]]
        for node in layer["inbound_nodes"]
    ]
    if era == "keras-2.2":
        for key, value in list(inner.items()):
            if isinstance(value, dict) and value.get("class_name") == "GlorotUniform":
                inner[key] = {
                    "class_name": "VarianceScaling",
                    "config": {
                        "scale": 1.0,
                        "mode": "fan_avg",
                        "distribution": "uniform",
                        "seed": None,
                    },
                }


def _strip(node: Any, era: str) -> Any:
    """Drops Keras 3's keys (and those the era did not write); dtype policies as strings."""
    if isinstance(node, list):
        return [_strip(item, era) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("class_name") == "DTypePolicy":
        return node["config"]["name"]
    dropped = {"module", "registered_name", *_KERAS3_ONLY}
    if era == "keras-2.2":
        dropped.update(_NOT_IN_KERAS_22)
    return {key: _strip(value, era) for key, value in node.items() if key not in dropped}
