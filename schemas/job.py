"""The job as clients see it."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from schemas.job_spec import JobSpecSchema

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
PHASES = ("queued", "downloading", "loading", "training", "exporting", "uploading", "done")
ERROR_CODES = (
    "invalid_model",
    "invalid_dataset",
    "incompatible",
    "storage",
    "timeout",
    "gate_failed",
    "out_of_memory",
    "disk_full",
    "killed",
    "trainer_crashed",
    "output_exists",
    "cancelled",
    "attempts_exhausted",
    "internal",
)


class AsStoredField(fields.Nested):
    """A nested object the document describes by its schema, and that is dumped as stored.

    A job's spec was loaded through ``JobSpecSchema`` when the job was created, so it already
    has that schema's form; dumping it through the schema again on every read would rebuild
    each level of it for the same result.
    """

    # Field and Nested name the first argument differently: no signature satisfies both.
    def _serialize(  # type: ignore[override]
        self, nested_obj: Any, attr: str | None, obj: Any, **kwargs: Any
    ) -> Any:
        return nested_obj


class ProgressSchema(Schema):
    """Where a job is."""

    phase = fields.String(required=True, metadata={"enum": list(PHASES)})
    epoch = fields.Integer(required=True, metadata={"description": "Epochs finished so far."})
    epochs = fields.Integer(
        required=True, metadata={"description": "Epochs planned in all phases."}
    )
    percent = fields.Float(required=True)


class PromotionSchema(Schema):
    """The alias a succeeded job promoted its model to (spec ``promote``)."""

    alias_uri = fields.String(required=True)
    version = fields.Integer(required=True, metadata={"description": "The alias's new version."})
    previous_target = fields.Dict(
        allow_none=True,
        required=True,
        metadata={"description": "The target it replaced (job_id and URIs), null for a new alias."},
    )


class ClassFiguresSchema(Schema):
    """One class's figures in an evaluation."""

    precision = fields.Float(required=True)
    recall = fields.Float(required=True)
    f1 = fields.Float(required=True)
    support = fields.Integer(required=True, metadata={"description": "The class's examples."})


class EvaluationMetricsSchema(Schema):
    """An evaluation's metrics, computed the same way for every model."""

    loss = fields.Float(
        required=True,
        metadata={
            "description": "Mean cross-entropy of the true class's score (clipped to "
            "[1e-7, 1 - 1e-7]), whatever loss the model trained with."
        },
    )
    accuracy = fields.Float(required=True)
    top_k_accuracy = fields.Float(
        required=True,
        metadata={"description": "The true class among the top_k highest scores."},
    )
    macro_f1 = fields.Float(required=True, metadata={"description": "Mean of the classes' F1."})


class EvaluationSchema(Schema):
    """The final evaluation of the new model, after training, on images it never trained on."""

    split = fields.String(
        required=True,
        metadata={
            "description": "test (dataset.test) or validation (where there is no test set).",
            "enum": ["test", "validation"],
        },
    )
    examples = fields.Integer(required=True)
    class_names = fields.List(
        fields.String(), required=True, metadata={"description": "In label order."}
    )
    top_k = fields.Integer(
        required=True,
        metadata={"description": "k of top_k_accuracy: 5, or one fewer than the classes."},
    )
    metrics = fields.Nested(EvaluationMetricsSchema, required=True)
    per_class = fields.Dict(
        keys=fields.String(), values=fields.Nested(ClassFiguresSchema), required=True
    )
    confusion_matrix = fields.List(
        fields.List(fields.Integer()),
        required=True,
        metadata={"description": "Rows: true class, columns: predicted, in class_names order."},
    )


class ComparisonSchema(Schema):
    """The champion (compare_with) evaluated in the same job on the same images."""

    model_uri = fields.String(required=True, metadata={"description": "The champion model."})
    split = fields.String(required=True, metadata={"enum": ["test", "validation"]})
    metrics = fields.Nested(EvaluationMetricsSchema, required=True)
    per_class = fields.Dict(
        keys=fields.String(), values=fields.Nested(ClassFiguresSchema), required=True
    )
    confusion_matrix = fields.List(fields.List(fields.Integer()), required=True)
    delta = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        required=True,
        metadata={"description": "Per metric: the new model's minus the champion's."},
    )
    per_class_delta = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.Float()),
        required=True,
        metadata={"description": "Per class: precision, recall and F1, new minus champion."},
    )


class ResultSchema(Schema):
    """What a succeeded job wrote."""

    saved_model_uri = fields.String(required=True)
    keras_uri = fields.String(required=True)
    manifest_uri = fields.String(required=True)
    metrics = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)
    history = fields.List(
        fields.Dict(), required=True, metadata={"description": "Metrics per epoch, with its phase."}
    )
    class_names = fields.List(fields.String(), metadata={"description": "In label order."})
    history_plot_uri = fields.String(
        metadata={
            "description": "history.png beside the model: loss and metrics per epoch, phases "
            "marked."
        }
    )
    tensorboard_uri = fields.String(
        metadata={
            "description": "TensorBoard event files (train/ and validation/): "
            "tensorboard --logdir <this prefix>."
        }
    )
    promotion = fields.Nested(
        PromotionSchema,
        metadata={"description": "Where spec promote is given: the alias it changed."},
    )
    evaluation = fields.Nested(
        EvaluationSchema,
        allow_none=True,
        metadata={"description": "null where there was neither a test set nor validation."},
    )
    comparison = fields.Nested(
        ComparisonSchema,
        allow_none=True,
        metadata={"description": "null without compare_with."},
    )
    evaluation_uri = fields.String(
        metadata={"description": "evaluation.json beside the model: evaluation and comparison."}
    )
    confusion_matrix_uri = fields.String(
        metadata={
            "description": "confusion_matrix.png beside the model: counts per true and "
            "predicted class, class names on the axes."
        }
    )


class JobErrorSchema(Schema):
    """Why a job failed."""

    code = fields.String(required=True, metadata={"enum": list(ERROR_CODES)})
    message = fields.String(required=True, metadata={"description": "What to change."})
    evaluation = fields.Nested(
        EvaluationSchema,
        allow_none=True,
        metadata={"description": "gate_failed only: the final evaluation that missed."},
    )
    comparison = fields.Nested(
        ComparisonSchema,
        allow_none=True,
        metadata={"description": "gate_failed only: the champion's, where compare_with."},
    )


class LeaseSchema(Schema):
    """The worker holding a running job, and its heartbeat.

    The worker renews the lease every few seconds (``FINETUNE_HEARTBEAT_SECONDS``); a
    ``heartbeat_at`` that stops moving and an ``expires_at`` in the past mean the worker is gone.
    """

    worker = fields.String(
        required=True,
        metadata={
            "description": "The worker's id: host-pid-random.",
            "example": "finetune-worker-7c9d-12-a1b2c3",
        },
    )
    heartbeat_at = fields.String(
        required=True, metadata={"description": "When the worker last renewed the lease (UTC)."}
    )
    expires_at = fields.String(
        required=True,
        metadata={"description": "When the lease runs out unless renewed (UTC)."},
    )


class JobSchema(Schema):
    """A fine-tuning job."""

    id = fields.String(required=True, metadata={"example": "ftj_01JD3Q7Z8KX4W2C9V6B5N3M1PQ"})
    status = fields.String(
        required=True, metadata={"enum": list(STATUSES), "component": "JobStatus"}
    )
    created_at = fields.String(required=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    updated_at = fields.String(metadata={"description": "Last change of the record."})
    name = fields.String(allow_none=True)
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    spec = AsStoredField(
        JobSpecSchema,
        required=True,
        metadata={"description": "The validated spec, defaults filled in."},
    )
    attempt = fields.Integer(required=True)
    progress = fields.Nested(ProgressSchema, required=True)
    metrics = fields.Dict(keys=fields.String(), values=fields.Float())
    result = fields.Nested(ResultSchema, allow_none=True)
    error = fields.Nested(JobErrorSchema, allow_none=True)
    cancel_requested = fields.Boolean(metadata={"description": "A cancel was asked for."})
    lease = fields.Nested(
        LeaseSchema,
        allow_none=True,
        metadata={
            "description": "While running: the worker holding the job and its heartbeat "
            "(null when queued or final)."
        },
    )


class JobListSchema(Schema):
    """A page of jobs, newest first."""

    jobs = fields.List(fields.Nested(JobSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
