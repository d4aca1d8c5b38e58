"""The job spec: what a client POSTs to ``/v1/jobs``. Every default is stated on its field."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from schemas.architectures import option_error
from schemas.fields import (
    ClassWeightField,
    FreezeField,
    LayerRefField,
    StorageURIField,
    WebhookURLField,
)
from schemas.strict import StrictBoolean, StrictFloat, StrictInteger, StrictSchema
from service.contract.architectures import ARCHITECTURE_NAMES, ARCHITECTURES, INCLUDE_TOP
from service.contract.formats import BASE_MODEL_FORMATS, DATASET_FORMATS
from service.contract.preprocessing import AUTO, PREPROCESSING_NAMES
from service.contract.recipe import (
    CONSTANT,
    EXPONENTIAL,
    LABEL_SMOOTHING_LOSSES,
    LR_SCHEDULES,
    OPTIMIZER_OPTIONS,
    OPTIMIZERS,
    optimizers_taking,
)

MAX_LABELS = 32
LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.\-/]{0,61}[A-Za-z0-9])?$")
MAX_LABEL_VALUE = 256
MAX_EPOCHS = 1000
#: The most accelerators a job may ask for in any deployment (one machine holds them all).
MAX_GPUS_PER_MACHINE = 64
MAX_BATCH_SIZE = 4096
MAX_PHASES = 20
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
PRECISIONS = ("auto", "off", "mixed_float16", "mixed_bfloat16")
FEATURE_CACHE_MODES = ("auto", "off")
KERAS_NAME = [
    validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", error="Must be a Keras name."),
    validate.Length(min=1, max=64),
]


#: In the document's rules that tie fields together: a field absent or null, or set.
_NULL: dict[str, Any] = {"enum": [None]}
_SET: dict[str, Any] = {"not": _NULL}
_POSITIVE: dict[str, Any] = {"minimum": 0, "exclusiveMinimum": True}


def _refusing(option: str) -> list[str]:
    """The optimizers that do not take ``option``."""
    return [name for name in OPTIMIZERS if option not in OPTIMIZER_OPTIONS[name]]


def _defaults(schema: type[Schema]) -> Any:
    """A load_default that fills a nested object with its own defaults."""
    return lambda: schema().load({})


class BaseModelSchema(StrictSchema):
    """The pretrained model to start from: a model file (``uri``), or a named architecture
    with its weights file (``architecture`` + ``weights_uri``)."""

    #: ``_one_source``'s rule in the OpenAPI document (see service/api/openapi_extras.py), as
    #: the combinations it refuses: neither source, both, architecture without weights_uri,
    #: weights_uri or options without architecture, a format with architecture. (The option
    #: names each architecture takes are listed in ``options``' description.)
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {
        "not": {
            "anyOf": [
                {"properties": {"uri": _NULL, "architecture": _NULL}},
                {
                    "required": ["uri", "architecture"],
                    "properties": {"uri": _SET, "architecture": _SET},
                },
                {
                    "required": ["architecture"],
                    "properties": {"architecture": _SET, "weights_uri": _NULL},
                },
                {
                    "required": ["weights_uri"],
                    "properties": {"architecture": _NULL, "weights_uri": _SET},
                },
                {
                    "required": ["options"],
                    "properties": {"architecture": _NULL, "options": {"minProperties": 1}},
                },
                {
                    "required": ["architecture", "format"],
                    "properties": {"architecture": _SET, "format": {"not": {"enum": ["auto"]}}},
                },
            ]
        }
    }

    uri = StorageURIField(
        load_default=None,
        metadata={
            "description": "A .keras file, a .h5 file, or a SavedModel folder (ending in '/'). "
            "Give either uri or architecture."
        },
    )
    format = fields.String(
        load_default="auto",
        validate=validate.OneOf(BASE_MODEL_FORMATS),
        metadata={"description": "Of uri. Default auto: detected by name and content."},
    )
    architecture = fields.String(
        load_default=None,
        validate=validate.OneOf(ARCHITECTURE_NAMES),
        metadata={
            "component": "Architecture",
            "description": "Instead of uri: a keras.applications architecture by name "
            "(MobileNetV2, ResNet50, EfficientNetB0, ...), built without weights and loaded "
            "from weights_uri. The service never downloads weights from the internet.",
        },
    )
    weights_uri = StorageURIField(
        load_default=None,
        metadata={
            "description": "Required with architecture: its weights file, an HDF5 .h5 as Keras "
            "publishes it (e.g. mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top"
            ".h5) or a .weights.h5 written by model.save_weights."
        },
    )
    options = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={
            "description": "With architecture: keyword arguments of its constructor, from an "
            "allow-list: include_top (every architecture; default false: the weights file "
            "is the no-top one; true: the file holds the 1000-class ImageNet top), alpha "
            "(MobileNet, MobileNetV2, MobileNetV3*), depth_multiplier (MobileNet), "
            "minimalistic (MobileNetV3*). Default {}.",
            "maxProperties": 8,
        },
    )

    @validates_schema
    def _one_source(self, data: dict[str, Any], **kwargs: Any) -> None:
        architecture = data.get("architecture")
        if data.get("uri") is None and architecture is None:
            raise ValidationError(
                "Give base_model.uri (a model file) or base_model.architecture with "
                "base_model.weights_uri.",
                field_name="uri",
            )
        if data.get("uri") is not None and architecture is not None:
            raise ValidationError(
                "Give either uri or architecture (+ weights_uri), not both.",
                field_name="architecture",
            )
        if architecture is None:
            for name in ("weights_uri", "options"):
                if data.get(name):
                    raise ValidationError("Only with base_model.architecture.", field_name=name)
            return
        if data.get("format", "auto") != "auto":
            raise ValidationError(
                "Only with base_model.uri; the weights file's layout is detected.",
                field_name="format",
            )
        if data.get("weights_uri") is None:
            raise ValidationError(
                f"Required with architecture: the {architecture} weights file (.h5 as Keras "
                "publishes it, or a .weights.h5).",
                field_name="weights_uri",
            )
        allowed = (INCLUDE_TOP, *ARCHITECTURES[architecture].options)
        problems: dict[str, list[str]] = {}
        for name, value in (data.get("options") or {}).items():
            if name not in allowed:
                problems[name] = [
                    f"Not an option the service passes to {architecture}; allowed: "
                    f"{', '.join(allowed)}."
                ]
            elif (problem := option_error(name, value)) is not None:
                problems[name] = [problem]
        if problems:
            raise ValidationError(problems, field_name="options")


class DatasetSchema(StrictSchema):
    """Where the images are and how to read them."""

    train = StorageURIField(
        required=True,
        metadata={
            "description": "A prefix holding one folder of images per class (class = folder "
            "name); a .zip or .tar.gz of such folders; a .npz with arrays x and y; or TFRecord "
            "files (a prefix, one .tfrecord file, or a glob such as s3://b/train-*.tfrecord)."
        },
    )
    validation = StorageURIField(
        load_default=None,
        allow_none=True,
        metadata={"description": "Default null: hold out validation_split of train instead."},
    )
    test = StorageURIField(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Default null: no test set (the final evaluation then runs on the "
            "validation images). A held-out set in any form train takes, with the same class "
            "names, used for nothing but the final evaluation: never for training, early "
            "stopping or the choice of the weights kept."
        },
    )
    validation_split = StrictFloat(
        load_default=0.2,
        validate=validate.Range(min=0.0, max=0.9),
        metadata={
            "description": "Share of train held out for validation when validation is null. "
            "Default 0.2; 0 means no validation."
        },
    )
    format = fields.String(
        load_default="auto",
        validate=validate.OneOf(DATASET_FORMATS),
        metadata={
            "description": "Default auto: by name (.zip, .tar.gz/.tgz/.tar, .npz, .tfrecord, a "
            "prefix of .tfrecord files) else image_folder. image_folder: one folder of images "
            "per class; zip/tar: an archive of such folders; npz: arrays x (N,H,W[,C], 0-255 "
            "pixels) and y (N class indices, or one-hot), optional class_names; tfrecord: "
            "tf.train.Example records with image (encoded bytes) and label (int64)."
        },
    )
    image_size = fields.List(
        StrictInteger(validate=validate.Range(min=8, max=4096)),
        load_default=None,
        allow_none=True,
        validate=validate.Length(equal=2),
        metadata={"description": "[height, width]; default null: the model's own input size."},
    )
    preprocessing = fields.String(
        load_default="auto",
        validate=validate.OneOf((AUTO, *PREPROCESSING_NAMES)),
        metadata={
            "description": "What the base model expects of its pixels, built into the exported "
            "model (which always takes raw 0-255 float32 pixels): auto (the default: the "
            "architecture's own family with base_model.architecture, else none), none (raw "
            "0-255), rescale (to 0-1), or a Keras applications family (mobilenet_v2, resnet50, "
            "efficientnet, ...) meaning that family's preprocess_input."
        },
    )


class HeadSchema(StrictSchema):
    """A new classification head in place of the model's own top."""

    cut_at = LayerRefField(
        load_default=-2,
        metadata={
            "description": "Take the features at this layer (index, negative from the end, "
            "or name). Default -2."
        },
    )
    pooling = fields.String(
        load_default="avg",
        validate=validate.OneOf(["avg", "max", "flatten", "none"]),
        metadata={"description": "Applied where the features are spatial. Default avg."},
    )
    hidden_units = fields.List(
        StrictInteger(validate=validate.Range(min=1, max=65536)),
        load_default=list,
        validate=validate.Length(max=8),
        metadata={"description": "Dense layers before the output. Default []."},
    )
    dropout = StrictFloat(
        load_default=0.0,
        validate=validate.Range(min=0.0, max=0.95),
        metadata={"description": "Dropout before each dense layer. Default 0."},
    )
    num_classes = StrictInteger(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=100_000),
        metadata={"description": "Default null: the number of classes found in the data."},
    )
    l2 = StrictFloat(
        load_default=0.0,
        validate=validate.Range(min=0.0, max=1.0),
        metadata={
            "description": "L2 penalty on the kernels of the head's dense layers (hidden and "
            "output), added to the loss: keras.regularizers.L2(l2). Default 0: none."
        },
    )


class EarlyStoppingSchema(StrictSchema):
    """Stop when the monitored metric stops improving."""

    monitor = fields.String(
        load_default="val_loss",
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Default val_loss."},
    )
    patience = StrictInteger(
        load_default=3,
        validate=validate.Range(min=0, max=1000),
        metadata={"description": "Default 3."},
    )
    restore_best_weights = StrictBoolean(
        load_default=True, metadata={"description": "Default true."}
    )
    min_delta = StrictFloat(
        load_default=0.0,
        validate=validate.Range(min=0.0, max=1e6),
        metadata={
            "description": "The least change of the monitored metric that counts as an "
            "improvement (Keras EarlyStopping's min_delta). Default 0."
        },
    )


class AugmentationSchema(StrictSchema):
    """Random changes to training images (never applied at validation or in serving)."""

    flip = fields.String(
        load_default="none",
        validate=validate.OneOf(FLIPS),
        metadata={"description": "Default none."},
    )
    rotation = StrictFloat(
        load_default=0.0,
        validate=validate.Range(min=0.0, max=0.5),
        metadata={
            "description": "Largest rotation as a fraction of a full turn (0.1 = 36 degrees). "
            "Default 0."
        },
    )
    zoom = StrictFloat(
        load_default=0.0,
        validate=validate.Range(min=0.0, max=0.9),
        metadata={"description": "Largest zoom in or out, as a fraction. Default 0."},
    )


class LearningRateScheduleSchema(StrictSchema):
    """How the learning rate moves within a phase: a linear warmup, then constant or a decay.

    Per phase of S steps per epoch and N epochs, with the phase's learning rate r: the first
    warmup_epochs x S steps rise linearly from r / (warmup steps) to r; the remaining steps keep
    r (constant) or decay from r to min_learning_rate (cosine, or exponential), reaching it at
    the phase's end. Each phase starts its schedule afresh.
    """

    #: ``_decay_floor``'s rule in the OpenAPI document, as the combinations it refuses (a
    #: field left out takes its default: constant, 0).
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {
        "not": {
            "anyOf": [
                {
                    "required": ["min_learning_rate"],
                    "properties": {"type": {"enum": [CONSTANT]}, "min_learning_rate": _POSITIVE},
                },
                {
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": [EXPONENTIAL]},
                        "min_learning_rate": {"maximum": 0},
                    },
                },
            ]
        }
    }

    type = fields.String(
        load_default=CONSTANT,
        validate=validate.OneOf(LR_SCHEDULES),
        metadata={
            "description": "constant: the phase's learning rate throughout; cosine: half a "
            "cosine wave from it down to min_learning_rate; exponential: a geometric decay "
            "from it to min_learning_rate. Default constant."
        },
    )
    warmup_epochs = StrictInteger(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_EPOCHS - 1),
        metadata={
            "description": "Epochs at the start of each phase over which the rate rises "
            "linearly from near 0 to the phase's learning rate; fewer than the phase's "
            "epochs. Default 0: no warmup."
        },
    )
    min_learning_rate = StrictFloat(
        load_default=0.0,
        validate=validate.Range(min=0.0, max=10.0),
        metadata={
            "description": "With cosine or exponential: the rate reached at the phase's end, "
            "below the phase's learning rate (above 0 for exponential). Default 0."
        },
    )

    @validates_schema
    def _decay_floor(self, data: dict[str, Any], **kwargs: Any) -> None:
        kind, floor = data.get("type", CONSTANT), data.get("min_learning_rate", 0.0)
        if kind == CONSTANT and floor > 0:
            raise ValidationError(
                "Only with type cosine or exponential: a constant schedule keeps the phase's "
                "learning rate. Leave min_learning_rate out, or choose a decaying type.",
                field_name="min_learning_rate",
            )
        if kind == EXPONENTIAL and floor <= 0:
            raise ValidationError(
                "An exponential decay needs a rate above 0 to decay to: set min_learning_rate "
                "(e.g. the learning rate / 100), or use type cosine, which can reach 0.",
                field_name="min_learning_rate",
            )


class TrainingSchema(StrictSchema):
    """How to train."""

    #: ``_options_fit_optimizer_and_loss``'s rule in the OpenAPI document, as the combinations
    #: it refuses. An optimizer left out is adam, which takes none of the options.
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {
        "not": {
            "anyOf": [
                *(
                    {
                        "required": [option],
                        "properties": {
                            option: _SET,
                            "optimizer": {"enum": _refusing(option)},
                        },
                    }
                    for option in ("weight_decay", "momentum")
                ),
                {
                    "required": ["nesterov"],
                    "properties": {
                        "nesterov": {"enum": [True]},
                        "optimizer": {"enum": _refusing("nesterov")},
                    },
                },
                {
                    "required": ["nesterov"],
                    "properties": {
                        "nesterov": {"enum": [True]},
                        "momentum": {"anyOf": [_NULL, {"maximum": 0}]},
                    },
                },
                {
                    "required": ["label_smoothing", "loss"],
                    "properties": {
                        "label_smoothing": _POSITIVE,
                        "loss": {"not": {"enum": list(LABEL_SMOOTHING_LOSSES)}},
                    },
                },
            ]
        }
    }

    epochs = StrictInteger(
        load_default=10,
        validate=validate.Range(min=1, max=MAX_EPOCHS),
        metadata={"description": f"Default 10, at most {MAX_EPOCHS}."},
    )
    batch_size = StrictInteger(
        load_default=32,
        validate=validate.Range(min=1, max=MAX_BATCH_SIZE),
        metadata={"description": f"Default 32, at most {MAX_BATCH_SIZE}."},
    )
    optimizer = fields.String(
        load_default="adam",
        validate=validate.OneOf(OPTIMIZERS),
        metadata={"description": "Default adam."},
    )
    learning_rate = StrictFloat(
        load_default=1e-4,
        validate=validate.Range(min=0.0, max=10.0, min_inclusive=False),
        metadata={"description": "Default 0.0001 (small, as fine-tuning wants)."},
    )
    loss = fields.String(
        load_default="categorical_crossentropy",
        validate=KERAS_NAME,
        metadata={"description": "A Keras loss name. Default categorical_crossentropy."},
    )
    metrics = fields.List(
        fields.String(validate=KERAS_NAME),
        load_default=lambda: ["accuracy"],
        validate=validate.Length(max=16),
        metadata={"description": 'Keras metric names. Default ["accuracy"].'},
    )
    early_stopping = fields.Nested(
        EarlyStoppingSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "Default null: no early stopping."},
    )
    seed = StrictInteger(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=2**31 - 1),
        metadata={"description": "Default null: not seeded. Set, a CPU run repeats."},
    )
    class_weight = ClassWeightField(
        load_default=None,
        allow_none=True,
        metadata={
            "description": 'Default null: every image counts the same. "balanced": weights '
            "inverse to the class frequency; or an object of class name to weight (classes "
            "not named weigh 1)."
        },
    )
    augmentation = fields.Nested(
        AugmentationSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "Default null: no augmentation."},
    )
    mixed_precision = fields.String(
        load_default="auto",
        validate=validate.OneOf(PRECISIONS),
        metadata={
            "description": "Default auto: mixed_float16 on a GPU of compute capability 7 or "
            "more, else off (float32). off, mixed_float16 and mixed_bfloat16 force it."
        },
    )
    feature_cache = fields.String(
        load_default="auto",
        validate=validate.OneOf(FEATURE_CACHE_MODES),
        metadata={
            "description": "Default auto: where a phase trains only layers after a frozen "
            "prefix (frozen layers, BatchNormalization in inference mode, nothing random) that "
            "holds most of the model's cost, and no augmentation runs, the prefix's outputs are "
            "computed once for the training and validation images and the phase trains the "
            "rest of the model on them (the same weights and metrics, faster); the job's events "
            "say where the cache was cut, how big it is and where it is kept. off: every phase "
            "runs the whole model on the images every epoch."
        },
    )
    lr_schedule = fields.Nested(
        LearningRateScheduleSchema,
        load_default=_defaults(LearningRateScheduleSchema),
        metadata={
            "description": "The learning rate within each phase (a phase may set its own). "
            'Default {"type": "constant", "warmup_epochs": 0, "min_learning_rate": 0}.'
        },
    )
    label_smoothing = StrictFloat(
        load_default=0.0,
        validate=validate.Range(min=0.0, max=0.5),
        metadata={
            "description": "Label smoothing of the loss (0-0.5): targets become "
            "1 - label_smoothing + label_smoothing / classes and label_smoothing / classes. "
            f"Only with loss {', '.join(LABEL_SMOOTHING_LOSSES)}. Default 0."
        },
    )
    weight_decay = StrictFloat(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0.0, max=1.0),
        metadata={
            "description": "Decoupled weight decay of the optimizer, only with "
            f"{' or '.join(optimizers_taking('weight_decay'))}. Default null: the optimizer's "
            "own (Keras: 0.004 for adamw, none for sgd)."
        },
    )
    momentum = StrictFloat(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0.0, max=1.0, max_inclusive=False),
        metadata={
            "description": "Momentum, only with "
            f"{' or '.join(optimizers_taking('momentum'))}. Default null: the optimizer's own "
            "(Keras: 0)."
        },
    )
    nesterov = StrictBoolean(
        load_default=False,
        metadata={
            "description": "Nesterov momentum, only with "
            f"{' or '.join(optimizers_taking('nesterov'))} and a momentum above 0. "
            "Default false."
        },
    )
    clipnorm = StrictFloat(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0.0, max=1e6, min_inclusive=False),
        metadata={
            "description": "Clip each weight's gradient to at most this L2 norm (every "
            "optimizer). Default null: no clipping."
        },
    )

    @validates_schema
    def _options_fit_optimizer_and_loss(self, data: dict[str, Any], **kwargs: Any) -> None:
        optimizer = data.get("optimizer", "adam")
        problems: dict[str, list[str]] = {}
        taken = OPTIMIZER_OPTIONS.get(optimizer, ())
        for option, given in (
            ("weight_decay", data.get("weight_decay") is not None),
            ("momentum", data.get("momentum") is not None),
            ("nesterov", bool(data.get("nesterov"))),
        ):
            if given and option not in taken:
                problems[option] = [_optimizer_option_error(option, optimizer)]
        if data.get("nesterov") and not data.get("momentum") and "nesterov" not in problems:
            problems["nesterov"] = ["Nesterov momentum needs training.momentum above 0 (e.g. 0.9)."]
        loss = data.get("loss", "")
        if data.get("label_smoothing", 0.0) > 0 and loss not in LABEL_SMOOTHING_LOSSES:
            problems["label_smoothing"] = [
                f"Only with loss {', '.join(LABEL_SMOOTHING_LOSSES)}; {loss!r} takes none. "
                "For integer labels use categorical_crossentropy instead of "
                "sparse_categorical_crossentropy (the service one-hot encodes the labels)."
            ]
        if problems:
            raise ValidationError(problems)


def _optimizer_option_error(option: str, optimizer: str) -> str:
    takers = optimizers_taking(option)
    hint = " (adamw is Adam with weight decay)" if option == "weight_decay" else ""
    verb = "does" if len(takers) == 1 else "do"
    return (
        f"Optimizer {optimizer!r} takes no {option}; only {' and '.join(takers)} {verb}{hint}. "
        f"Change training.optimizer or leave training.{option} out."
    )


class PhaseSchema(StrictSchema):
    """One phase of gradual unfreezing."""

    epochs = StrictInteger(
        required=True,
        validate=validate.Range(min=1, max=MAX_EPOCHS),
        metadata={"description": f"At most {MAX_EPOCHS}."},
    )
    learning_rate = StrictFloat(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0.0, max=10.0, min_inclusive=False),
        metadata={"description": "Default null: training.learning_rate."},
    )
    freeze = FreezeField(
        load_default=None,
        allow_none=True,
        metadata={"description": "Default null: the spec's freeze."},
    )
    lr_schedule = fields.Nested(
        LearningRateScheduleSchema,
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Default null: training.lr_schedule. Given, it replaces it whole "
            "for this phase (its fields left out take their own defaults)."
        },
    )


class OutputSchema(StrictSchema):
    """Where the result goes."""

    uri = StorageURIField(
        prefix=True,
        access="write",
        required=True,
        metadata={"description": "A prefix ending with '/'."},
    )
    overwrite = StrictBoolean(
        load_default=False,
        metadata={
            "description": "Default false: a job never replaces a model already published "
            "under uri (its manifest.json, model.keras or saved_model/). Refused at submit "
            "(422 on output.uri) where the model is there already, failed with error code "
            "output_exists where it appears later or another job claimed the prefix first. "
            "true: the job replaces what is there."
        },
    )


class PromoteSchema(StrictSchema):
    """Where the job's model becomes current once it is published and its gate passed."""

    alias_uri = StorageURIField(
        prefix=False,
        access="write",
        required=True,
        metadata={
            "description": "An alias object (JSON, e.g. s3://models/flowers/production.json; "
            "created where there is none): its target becomes this job's model by "
            "compare-and-swap, the earlier target kept in its history. Read it with "
            "GET /v1/aliases?uri=...; undo with POST /v1/aliases/rollback."
        },
    )

class CompareWithSchema(StrictSchema):
    """The champion the new model is compared with: a model file, or an alias's current target."""

    #: Exactly one: not both missing or null, and not both set (as base_model states its
    #: sources).
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {
        "not": {
            "anyOf": [
                {"properties": {"model_uri": _NULL, "alias_uri": _NULL}},
                {
                    "required": ["model_uri", "alias_uri"],
                    "properties": {"model_uri": _SET, "alias_uri": _SET},
                },
            ]
        }
    }

    model_uri = StorageURIField(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "A .keras or .h5 file or a SavedModel folder (ending with '/'), "
            "checked and loaded like base_model.uri. Where a manifest.json lies beside it (a "
            "model this service published) its class names and input size are used; else the "
            "model is read as a plain Keras model at its own input size, its outputs in the "
            "new model's class order."
        },
    )
    alias_uri = StorageURIField(
        prefix=False,
        load_default=None,
        allow_none=True,
        metadata={
            "description": "An alias object (JSON: {target: {job_id, keras_uri, "
            "saved_model_uri, manifest_uri}, version, updated_at, history}); the champion is "
            "its current target's keras_uri, read with the target's manifest."
        },
    )

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        given = [name for name in ("model_uri", "alias_uri") if data.get(name) is not None]
        if len(given) != 1:
            raise ValidationError("Give exactly one of model_uri and alias_uri.", "model_uri")


#: Where the gate's metric is measured: the prefix of its name.
GATE_SPLITS = ("val_", "test_")


class GateSchema(StrictSchema):
    """A bar the new model must clear for the job to succeed (and anything to be published)."""

    #: A bound at least: stated in the OpenAPI document (see service/api/openapi_extras.py) as
    #: "not all missing or null"; an ``anyOf`` would make client generators read the gate as
    #: a union of partial objects and lose ``metric``.
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {
        "not": {
            "properties": {"min": _NULL, "max": _NULL, "min_delta": _NULL, "max_class_drop": _NULL}
        }
    }

    metric = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "<m> (the last training epoch's), val_<m> (validation) or test_<m> "
            "(the final evaluation: loss, accuracy, top_k_accuracy, macro_f1; on dataset.test, "
            "which test_<m> needs)."
        },
    )
    min = StrictFloat(
        load_default=None,
        allow_none=True,
        metadata={"description": "Fail below this (accuracies)."},
    )
    max = StrictFloat(
        load_default=None, allow_none=True, metadata={"description": "Fail above this (losses)."}
    )
    min_delta = StrictFloat(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Default null. Fail where the new model's metric minus the "
            "champion's (compare_with, which this needs, both from the final evaluation) is "
            "below this: 0 means at least as good, -0.005 allows a small loss. For a loss "
            "metric (lower is better) the difference is taken the other way round: champion "
            "minus new."
        },
    )
    max_class_drop = StrictFloat(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0.0, max=1.0),
        metadata={
            "description": "Default null. Fail where any class's recall in the final "
            "evaluation is lower than the champion's (compare_with, which this needs) by more "
            "than this."
        },
    )

    @validates_schema
    def _one_bound(self, data: dict[str, Any], **kwargs: Any) -> None:
        bounds = ("min", "max", "min_delta", "max_class_drop")
        if all(data.get(name) is None for name in bounds):
            raise ValidationError("Give min, max, min_delta or max_class_drop.", field_name="min")


class LimitsSchema(StrictSchema):
    """Bounds on a job's run."""

    max_runtime_seconds = StrictInteger(
        load_default=86_400,
        validate=validate.Range(min=1, max=7 * 86_400),
        metadata={"description": "Default 86400 (one day), at most a week."},
    )
    max_attempts = StrictInteger(
        load_default=3,
        validate=validate.Range(min=1, max=20),
        metadata={"description": "Default 3."},
    )


class ResourcesSchema(StrictSchema):
    """What one job uses of one worker's machine."""

    gpus = StrictInteger(
        load_default=1,
        validate=validate.Range(min=1, max=MAX_GPUS_PER_MACHINE),
        metadata={
            "description": "Default 1. Accelerators of one machine the job trains on, data "
            "parallel (TensorFlow's MirroredStrategy): each step's batch of "
            "training.batch_size images is split across them. Only a worker holding at least "
            "this many devices claims the job; a job no running worker can hold stays queued, "
            "with an event saying what it waits for. The service's maximum "
            "(FINETUNE_MAX_GPUS_PER_JOB, default 8) is a 422 above it; the document's "
            f"{MAX_GPUS_PER_MACHINE} bounds every deployment (one machine's accelerators)."
        },
    )


class NotifySchema(StrictSchema):
    """Who to tell when the job reaches a final status."""

    webhook_url = WebhookURLField(
        required=True,
        metadata={
            "description": (
                'Gets a POST of {"type": "job.finished", "delivery_id", "job"} on '
                "every final status (succeeded, failed, cancelled), signed with HMAC-SHA256: "
                "header X-Finetune-Signature: sha256=<hex of HMAC(secret, "
                '"{X-Finetune-Timestamp}.{body}")>. Retried with exponential backoff on '
                "network errors, 408, 429 and 5xx; redirects are not followed. Loopback, "
                "link-local and private addresses are refused unless the operator allows them."
            ),
            "example": "https://ci.example.com/hooks/finetune",
        },
    )


class JobSpecSchema(StrictSchema):
    """A fine-tuning job: base model, data, head, freezing, training, output."""

    name = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=200),
        metadata={"description": "Free text, at most 200 characters."},
    )
    labels = fields.Dict(
        keys=fields.String(validate=validate.Regexp(LABEL_KEY, error="Not a valid label key.")),
        values=fields.String(validate=validate.Length(max=MAX_LABEL_VALUE)),
        load_default=dict,
        metadata={
            "description": f"At most {MAX_LABELS} key=value labels for filtering. A key is "
            "1-63 letters, digits, '_', '.', '-' or '/', starting and ending with a letter or "
            f"digit; a value at most {MAX_LABEL_VALUE} characters.",
            "maxProperties": MAX_LABELS,
        },
    )
    base_model = fields.Nested(BaseModelSchema, required=True)
    dataset = fields.Nested(DatasetSchema, required=True)
    head = fields.Nested(
        HeadSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "Default null: keep the model's own output layer."},
    )
    freeze = FreezeField(load_default="none", metadata={"description": 'Default "none".'})
    training = fields.Nested(TrainingSchema, load_default=_defaults(TrainingSchema))
    schedule = fields.List(
        fields.Nested(PhaseSchema),
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=MAX_PHASES),
        metadata={
            "description": "Default null: one phase from training and freeze. At most "
            f"{MAX_PHASES} phases and {MAX_EPOCHS} epochs in all."
        },
    )
    output = fields.Nested(OutputSchema, required=True)
    gate = fields.Nested(
        GateSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "Default null: no gate."},
    )
    promote = fields.Nested(
        PromoteSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "Default null: the job changes no alias."},
    )
    compare_with = fields.Nested(
        CompareWithSchema,
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Default null: no comparison. The champion, evaluated in the same "
            "job on the same images as the new model (result.comparison)."
        },
    )
    limits = fields.Nested(LimitsSchema, load_default=_defaults(LimitsSchema))
    resources = fields.Nested(ResourcesSchema, load_default=_defaults(ResourcesSchema))
    notify = fields.Nested(
        NotifySchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "Default null: no webhook."},
    )

    @validates("labels")
    def _label_count(self, value: dict[str, str], **kwargs: Any) -> None:
        if len(value) > MAX_LABELS:
            raise ValidationError(f"At most {MAX_LABELS} labels.")

    @validates_schema
    def _gate_has_what_it_needs(self, data: dict[str, Any], **kwargs: Any) -> None:
        gate = data.get("gate")
        if not gate:
            return
        if str(gate.get("metric", "")).startswith("test_") and not (data.get("dataset") or {}).get(
            "test"
        ):
            raise ValidationError(
                _at(
                    ["gate", "metric"],
                    "A test_ metric is measured on dataset.test: give dataset.test, or gate on "
                    "val_ or training metrics.",
                )
            )
        if data.get("compare_with") is None:
            for name in ("min_delta", "max_class_drop"):
                if gate.get(name) is not None:
                    raise ValidationError(
                        _at(
                            ["gate", name],
                            "Needs compare_with (the champion to compare with): give "
                            "compare_with.model_uri or compare_with.alias_uri, or leave this out.",
                        )
                    )

    @validates_schema
    def _total_epochs(self, data: dict[str, Any], **kwargs: Any) -> None:
        phases = data.get("schedule") or []
        total = sum(phase.get("epochs", 0) for phase in phases)
        if total > MAX_EPOCHS:
            raise ValidationError(
                f"At most {MAX_EPOCHS} epochs in all phases together; these add up to {total}.",
                field_name="schedule",
            )

    @validates_schema
    def _batch_splits_across_devices(self, data: dict[str, Any], **kwargs: Any) -> None:
        """A batch is split evenly across the job's devices (resources.gpus)."""
        devices = (data.get("resources") or {}).get("gpus", 1)
        batch_size = (data.get("training") or {}).get("batch_size")
        if batch_size is not None and devices > 1 and batch_size % devices:
            below = batch_size // devices * devices or devices
            above = (batch_size // devices + 1) * devices
            raise ValidationError(
                _at(
                    ["training", "batch_size"],
                    f"Must be a multiple of resources.gpus ({devices}): each step's batch is "
                    f"split evenly across the devices. Use e.g. {below} or {above}.",
                )
            )

    @validates_schema
    def _lr_schedules_fit_their_phases(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Each phase's schedule warms up for fewer epochs than the phase has, and decays to
        a rate below the phase's learning rate."""
        training = data.get("training") or {}
        inherited = training.get("lr_schedule")
        rate = training.get("learning_rate")
        phases = data.get("schedule")
        if phases is None:
            phases = [{"epochs": training.get("epochs"), "learning_rate": None}]
        for index, phase in enumerate(phases):
            own = phase.get("lr_schedule")
            lr_schedule = own if own is not None else inherited
            if lr_schedule is None:
                continue
            path: list[str | int] = (
                ["schedule", index, "lr_schedule"]
                if own is not None
                else ["training", "lr_schedule"]
            )
            which = f"schedule[{index}]" if data.get("schedule") is not None else "the job"
            phase_rate = phase.get("learning_rate") or rate
            warmup, epochs = lr_schedule["warmup_epochs"], phase["epochs"]
            if warmup >= epochs:
                raise ValidationError(
                    _at(
                        [*path, "warmup_epochs"],
                        f"Must be fewer than the phase's epochs: {which} has {epochs}. Lower "
                        "warmup_epochs or add epochs.",
                    )
                )
            floor = lr_schedule["min_learning_rate"]
            if lr_schedule["type"] != CONSTANT and phase_rate is not None and floor >= phase_rate:
                raise ValidationError(
                    _at(
                        [*path, "min_learning_rate"],
                        f"Must be below the learning rate it decays from: {which} trains at "
                        f"{phase_rate:g}.",
                    )
                )


def _at(path: list[str | int], message: str) -> dict[Any, Any]:
    """``message`` nested under ``path`` as marshmallow reports a field's errors."""
    node: Any = [message]
    for part in reversed(path):
        node = {part: node}
    return dict(node)
