"""The ``dataset.preprocessing`` names: Keras applications families and their modes.

The data half of preprocessing: the schema validates names against it, the plan resolves
``auto`` with it, and the trainer (service.trainer.preprocessing) builds the layers of each mode.
"""

from __future__ import annotations

#: What ``auto`` means: the architecture's own family with a named architecture, else this.
AUTO = "auto"
NO_PREPROCESSING = "none"
RESCALE = "rescale"

#: Keras applications family (module name) -> its preprocess_input mode (tf, torch, caffe or
#: none, for families whose models preprocess inside themselves).
FAMILY_MODES: dict[str, str] = {
    "convnext": "none",
    "densenet": "torch",
    "efficientnet": "none",
    "efficientnet_v2": "none",
    "inception_resnet_v2": "tf",
    "inception_v3": "tf",
    "mobilenet": "tf",
    "mobilenet_v2": "tf",
    "mobilenet_v3": "none",
    "nasnet": "tf",
    "resnet": "caffe",
    "resnet50": "caffe",
    "resnet_v2": "tf",
    "vgg16": "caffe",
    "vgg19": "caffe",
    "xception": "tf",
}
#: Every accepted ``dataset.preprocessing`` value once ``auto`` is resolved.
PREPROCESSING_NAMES: tuple[str, ...] = (NO_PREPROCESSING, RESCALE, *sorted(FAMILY_MODES))
