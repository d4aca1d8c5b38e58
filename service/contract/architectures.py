"""The named architectures a job may start from (``base_model.architecture``), as plain data.

Each name is a ``keras.applications`` constructor. The schema validates specs against this
table without importing Keras; the trainer (service.trainer.architectures) builds from it. Per
architecture: its ``keras.applications`` family (the module, which is also its
``dataset.preprocessing`` name), its default input size, and the keyword arguments a spec may
pass in ``base_model.options`` (an allow-list: ``weights``, ``input_tensor``, ``pooling``,
``classes`` and the like are never taken from a client).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """One ``keras.applications`` constructor.

    Attributes:
        name: The constructor's name (``MobileNetV2``).
        family: Its ``keras.applications`` module, e.g. ``mobilenet_v2``; also the name of its
            preprocessing in service.contract.preprocessing.FAMILY_MODES.
        default_size: The square input size it was published for, used when
            ``dataset.image_size`` is not given.
        options: The option names a spec may set besides ``include_top``.
    """

    name: str
    family: str
    default_size: int = 224
    options: tuple[str, ...] = ()


#: The option every architecture takes; absent from ``base_model.options`` it is this.
INCLUDE_TOP = "include_top"
INCLUDE_TOP_DEFAULT = False

_EFFICIENTNET_SIZES = (224, 240, 260, 300, 380, 456, 528, 600)
_EFFICIENTNET_V2_SIZES = {"B0": 224, "B1": 240, "B2": 260, "B3": 300, "S": 384, "M": 480, "L": 480}

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("MobileNet", "mobilenet", options=("alpha", "depth_multiplier")),
        Architecture("MobileNetV2", "mobilenet_v2", options=("alpha",)),
        Architecture("MobileNetV3Small", "mobilenet_v3", options=("alpha", "minimalistic")),
        Architecture("MobileNetV3Large", "mobilenet_v3", options=("alpha", "minimalistic")),
        *(Architecture(f"ResNet{n}", "resnet50" if n == 50 else "resnet") for n in (50, 101, 152)),
        *(Architecture(f"ResNet{n}V2", "resnet_v2") for n in (50, 101, 152)),
        *(
            Architecture(f"EfficientNetB{i}", "efficientnet", size)
            for i, size in enumerate(_EFFICIENTNET_SIZES)
        ),
        *(
            Architecture(f"EfficientNetV2{v}", "efficientnet_v2", size)
            for v, size in _EFFICIENTNET_V2_SIZES.items()
        ),
        *(
            Architecture(f"ConvNeXt{v}", "convnext")
            for v in ("Tiny", "Small", "Base", "Large", "XLarge")
        ),
        *(Architecture(f"DenseNet{n}", "densenet") for n in (121, 169, 201)),
        Architecture("Xception", "xception", 299),
        Architecture("InceptionV3", "inception_v3", 299),
        Architecture("InceptionResNetV2", "inception_resnet_v2", 299),
        Architecture("VGG16", "vgg16"),
        Architecture("VGG19", "vgg19"),
        Architecture("NASNetMobile", "nasnet"),
        Architecture("NASNetLarge", "nasnet", 331),
    )
}
#: The accepted ``base_model.architecture`` values.
ARCHITECTURE_NAMES: tuple[str, ...] = tuple(ARCHITECTURES)
