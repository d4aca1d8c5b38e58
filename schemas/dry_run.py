"""The answer of ``POST /v1/jobs/validate`` (the dry run) for a spec that fits its model and data.

A spec that does not fit gets the usual 422 error instead, each problem under its field:
``errors.json.head.cut_at``, ``errors.json.schedule.1.freeze.until``, ...
"""

from __future__ import annotations

from marshmallow import Schema, fields


class LayerSchema(Schema):
    """One layer of the base model, as ``base.layers`` lists it (freeze rules count in it).

    A nested model's layers are listed in its place (without its input layer), named
    ``nested_model/layer``.
    """

    index = fields.Integer(required=True)
    name = fields.String(required=True)
    class_name = fields.String(required=True)
    weights = fields.Integer(required=True, metadata={"description": "Weight tensors."})
    params = fields.Integer(required=True, metadata={"description": "Scalars in its weights."})
    trainable_in_file = fields.Boolean(required=True)


class ArchitectureReportSchema(Schema):
    """A named architecture built and loaded from its weights file."""

    name = fields.String(required=True)
    options = fields.Dict(keys=fields.String())
    built = fields.String(metadata={"description": "The constructor call, with its options."})
    weights_layout = fields.String(
        metadata={"enum": ["legacy", "keras3"], "description": "Published .h5 or .weights.h5."}
    )
    weights_sha256 = fields.String(metadata={"description": "Of the weights file."})
    layers_loaded = fields.Integer(metadata={"description": "Layers given weights."})
    weights_loaded = fields.Integer(metadata={"description": "Weight tensors assigned."})
    loaded_weights_digest = fields.String(
        metadata={"description": "sha256 over the loaded weight arrays (float32, model order)."}
    )


class ModelLimitsSchema(Schema):
    """What a base model may be (FINETUNE_MAX_INPUT_PIXELS, FINETUNE_MAX_MODEL_PARAMS)."""

    max_input_pixels = fields.Integer(required=True)
    max_params = fields.Integer(required=True)


class ModelReportSchema(Schema):
    """The base model as the service opened it."""

    format = fields.String(
        required=True,
        metadata={"enum": ["keras", "h5", "saved_model", "weights_legacy", "weights_keras3"]},
    )
    written_by = fields.String(metadata={"description": "Keras version stored in the file."})
    reader = fields.String(metadata={"description": "keras (Keras 3, safe mode) for every file."})
    ignored = fields.List(
        fields.String(),
        metadata={
            "description": "What a SavedModel folder holds besides the layers and their weights "
            "(graph functions, resources, assets): ignored, never run."
        },
    )
    input_shape = fields.List(fields.Integer(allow_none=True), allow_none=True)
    input_pixels = fields.Integer(
        allow_none=True,
        metadata={"description": "Height x width of the model's input (null: any size)."},
    )
    output_shape = fields.List(fields.List(fields.Integer(allow_none=True)), allow_none=True)
    layer_count = fields.Integer(required=True)
    layers = fields.List(fields.Nested(LayerSchema), required=True)
    params = fields.Integer()
    limits = fields.Nested(
        ModelLimitsSchema,
        metadata={"description": "This service's limits on a base model; above them: 422."},
    )
    keras = fields.String()
    architecture = fields.Nested(
        ArchitectureReportSchema, metadata={"description": "Only for base_model.architecture."}
    )


class DataReportSchema(Schema):
    """What the sample of one dataset holds."""

    format = fields.String(required=True, metadata={"enum": ["image_folder", "npz", "tfrecord"]})
    class_names = fields.List(fields.String(), required=True)
    sampled = fields.Boolean(metadata={"description": "Only a sample was read."})
    examples_in_sample = fields.Integer()
    counts_in_sample = fields.Dict(keys=fields.String(), values=fields.Integer())
    image_shapes = fields.List(
        fields.List(fields.Integer()),
        metadata={"description": "Distinct [height, width, channels] of sampled images."},
    )


class DataPairSchema(Schema):
    """Training and validation data."""

    train = fields.Nested(DataReportSchema, allow_none=True)
    validation = fields.Nested(DataReportSchema, allow_none=True)


class HeadReportSchema(Schema):
    """Where the new head goes."""

    cut_layer = fields.String(required=True)
    feature_shape = fields.List(fields.Integer(allow_none=True))
    layers = fields.List(fields.String())
    output_units = fields.Integer()


class PhaseReportSchema(Schema):
    """What one phase freezes, and what stays trainable."""

    index = fields.Integer(required=True)
    epochs = fields.Integer()
    learning_rate = fields.Float()
    freeze = fields.Raw(metadata={"description": "The phase's freeze rule as written."})
    frozen_layers = fields.List(fields.String(), metadata={"description": "Base layers frozen."})
    frozen_batch_norms = fields.List(fields.String())
    trainable_weights = fields.Integer(metadata={"description": "Weight tensors that train."})
    trainable_params = fields.Integer()
    non_trainable_params = fields.Integer()


class SampleSchema(Schema):
    """How much of the data the dry run downloaded."""

    per_class = fields.Integer()
    files = fields.Dict(keys=fields.String(), values=fields.Integer())


class DryRunReportSchema(Schema):
    """A spec that fits its model and data: what the job would do."""

    valid = fields.Boolean(required=True, metadata={"description": "Always true in a 200."})
    model = fields.Nested(ModelReportSchema)
    image_shape = fields.List(
        fields.Integer(), metadata={"description": "[height, width, channels] trained at."}
    )
    preprocessing = fields.String()
    precision = fields.String(metadata={"description": "float32, mixed_float16, ..."})
    output_units = fields.Integer()
    data = fields.Nested(DataPairSchema)
    head = fields.Nested(HeadReportSchema, allow_none=True)
    phases = fields.List(fields.Nested(PhaseReportSchema))
    sample = fields.Nested(SampleSchema)
    warnings = fields.List(fields.String())
