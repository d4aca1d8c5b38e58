"""A trainer run's request and outcome: plain data between the worker and the trainer child."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from service.contract.layout import KERAS_FILE, SAVED_MODEL_DIR

#: What a trainer child does with a request: train and export, or only check (the dry run).
RunMode = Literal["train", "inspect"]


@dataclass(frozen=True)
class ChampionModel:
    """The model a job compares its own with (spec ``compare_with``), staged by the worker.

    Attributes:
        uri: Where it is stored (the model file, or the alias target's keras_uri).
        path: The staged local file or SavedModel folder.
        class_names: Its classes in output order, from its manifest; None where it has none
            (its outputs are then read in the new model's class order).
        input_shape: (height, width, channels) it was trained at, from its manifest; None:
            the model's own input size.
    """

    uri: str
    path: str
    class_names: list[str] | None
    input_shape: list[int] | None


@dataclass(frozen=True)
class TrainingRequest:
    """Everything the trainer needs; all paths are local, the trainer never touches storage.

    Attributes:
        job_id: The job's id, for logs and the exported model's metadata.
        spec: The validated job spec with every default filled in (schemas.JobSpecSchema).
        base_model_path: A local ``.keras``/``.h5`` file or SavedModel folder.
        train_path: The staged training data: a folder of class folders (also what a zip or
            tar archive was unpacked to), an ``.npz`` file, or a folder (or file) of TFRecords.
        validation_path: Like ``train_path``; None to hold out ``validation_split`` of train.
        output_dir: Where the trainer writes ``saved_model/`` and ``model.keras``.
        checkpoint_dir: Where the trainer writes a checkpoint after every epoch (None: none).
        resume_from: A checkpoint folder to continue from (None: start afresh).
        train_format: What ``train_path`` holds: ``image_folder``, ``npz`` or ``tfrecord``
            (the worker resolves the spec's ``auto``, ``zip`` and ``tar``).
        validation_format: The same for ``validation_path``; None: as ``train_format``.
        test_path: The staged test data, like ``train_path``, read only for the final
            evaluation; None: the evaluation runs on the validation images (where any).
        test_format: What ``test_path`` holds; None: as ``train_format``.
        champion: The model to evaluate beside the new one (compare_with), or None.
        mode: ``train`` fits, checkpoints and exports, stopping at the first problem;
            ``inspect`` (the dry run) trains nothing and reports every problem it finds.
        sampled: ``inspect`` only: the data is a sample of the dataset (class counts from
            TFRecords are then partial).
        data_cache_mb: Most megabytes of decoded images the input pipelines keep in memory;
            None: a quarter of the machine's memory; 0 streams every dataset. Cached features
            of a frozen prefix count against it too.
        scratch_dir: Where the trainer may write large temporary files (cached features);
            None: a temporary folder.
        max_input_pixels: Most height x width of the base model's input
            (Config.max_input_pixels); None: unchecked.
        max_model_params: Most parameters of the base model (Config.max_model_params); None:
            unchecked.
        lock_path: ``train`` only: the job's lock file on this machine. The trainer holds an
            exclusive lock on it (flock) from before it loads anything until it exits, so a new
            attempt never trains while a trainer of an earlier attempt lives. None: no lock.
        fault_oom_above_batch: Test-only fault injection: a batch size above this fails as out
            of memory (no device here runs out of memory on demand); None in every deployment.
    """

    job_id: str
    spec: dict[str, Any]
    base_model_path: str
    train_path: str
    validation_path: str | None
    output_dir: str
    checkpoint_dir: str | None = None
    resume_from: str | None = None
    train_format: str = "image_folder"
    validation_format: str | None = None
    test_path: str | None = None
    test_format: str | None = None
    champion: ChampionModel | None = None
    mode: RunMode = "train"
    sampled: bool = False
    data_cache_mb: float | None = None
    scratch_dir: str | None = None
    max_input_pixels: int | None = None
    max_model_params: int | None = None
    lock_path: str | None = None
    fault_oom_above_batch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A picklable, JSON-able form for the child process."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingRequest:
        """The inverse of to_dict."""
        champion = data.get("champion")
        fields = {**data, "champion": None if champion is None else ChampionModel(**champion)}
        return cls(**fields)


@dataclass
class TrainingOutcome:
    """What a finished training run produced (files are under the request's output_dir).

    Attributes:
        metrics: Final metrics (of the last epoch, or the restored best one).
        history: One entry per epoch: ``{"epoch", "phase", "loss", ...}``.
        class_names: Class names in label order.
        saved_model_dir: Folder name of the SavedModel under output_dir.
        keras_file: File name of the Keras model under output_dir.
        input_shape: The exported model's input shape, without the batch dimension.
        trainable_weights: How many weight tensors were trainable in the last phase.
        versions: Versions of TensorFlow and Keras that trained the model.
        timings: Seconds spent per step (``loading``, ``training``, ``exporting``).
        restored_epoch: The epoch whose weights early stopping restored (1-based), if any.
        phases: Per phase of the schedule: epochs run, seconds, learning rate, freeze rule,
            trainable weights.
        base_model: What the base model file was: ``format``, ``written_by``, ``reader``.
        precision: The dtype policy trained with (``float32``, ``mixed_float16``, ...).
        evaluation: The final evaluation (split, examples, class_names, metrics, per_class,
            confusion_matrix); None where there was neither a test set nor validation.
        comparison: The champion's evaluation on the same images (model_uri, metrics,
            per_class, delta); None without compare_with.
    """

    metrics: dict[str, float]
    history: list[dict[str, Any]]
    class_names: list[str]
    saved_model_dir: str = SAVED_MODEL_DIR
    keras_file: str = KERAS_FILE
    input_shape: list[int] = field(default_factory=list)
    trainable_weights: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    restored_epoch: int | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)
    base_model: dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"
    evaluation: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form for the worker."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingOutcome:
        """The inverse of to_dict."""
        return cls(**data)
