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
from schemas.strict import StrictFloat, StrictInteger, StrictSchema
from service.contract.architectures import ARCHITECTURE_NAMES, ARCHITECTURES, INCLUDE_TOP
from service.contract.formats import BASE_MODEL_FORMATS, DATASET_FORMATS
from service.contract.preprocessing import AUTO, PREPROCESSING_NAMES

MAX_LABELS = 32
LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.\-/]{0,61}[A-Za-z0-9])?$")
MAX_LABEL_VALUE = 256
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
MAX_PHASES = 20
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
PRECISIONS = ("auto", "off", "mixed_float16", "mixed_bfloat16")
KERAS_NAME = [
    validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", error="Must be a Keras name."),
    validate.Length(min=1, max=64),
]


#: In the document's rules that tie fields together: a field absent or null, or set.
_NULL: dict[str, Any] = {"enum": [None]}
_SET: dict[str, Any] = {"not": _NULL}


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
    restore_best_weights = fields.Boolean(
        load_default=True, metadata={"description": "Default true."}
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


class TrainingSchema(StrictSchema):
    """How to train."""

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


class OutputSchema(StrictSchema):
    """Where the result goes."""

    uri = StorageURIField(
        prefix=True,
        access="write",
        required=True,
        metadata={"description": "A prefix ending with '/'."},
    )


class GateSchema(StrictSchema):
    """A bar the final metric must clear for the job to succeed."""

    #: min, max or both: stated in the OpenAPI document (see service/api/openapi_extras.py) as
    #: "not both missing or null"; an ``anyOf`` of the two would make client generators read
    #: the gate as a union of two partial objects and lose ``metric``.
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {"not": {"properties": {"min": _NULL, "max": _NULL}}}

    metric = fields.String(required=True, validate=validate.Length(min=1, max=64))
    min = StrictFloat(
        load_default=None,
        allow_none=True,
        metadata={"description": "Fail below this (accuracies)."},
    )
    max = StrictFloat(
        load_default=None, allow_none=True, metadata={"description": "Fail above this (losses)."}
    )

    @validates_schema
    def _one_bound(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("min") is None and data.get("max") is None:
            raise ValidationError("Give min, max or both.", field_name="min")


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
    limits = fields.Nested(LimitsSchema, load_default=_defaults(LimitsSchema))
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
    def _total_epochs(self, data: dict[str, Any], **kwargs: Any) -> None:
        phases = data.get("schedule") or []
        total = sum(phase.get("epochs", 0) for phase in phases)
        if total > MAX_EPOCHS:
            raise ValidationError(
                f"At most {MAX_EPOCHS} epochs in all phases together; these add up to {total}.",
                field_name="schedule",
            )
