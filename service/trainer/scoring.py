"""The final evaluation's numbers, from class scores and true labels (NumPy only).

Every metric is computed here from the predicted class scores, the same way for the new model
and for the champion it is compared with:

- ``loss``: the mean cross-entropy of the true class's score (scores clipped to
  [1e-7, 1 - 1e-7], as Keras clips), whatever loss the model was trained with, so that two
  models trained with different losses compare;
- ``accuracy``: the share of examples whose highest score is their class;
- ``top_k_accuracy``: the share whose class is among the ``k`` highest scores,
  ``k = top_k_for(classes)``;
- ``macro_f1``: the mean of the per-class F1 scores;
- per class: ``precision`` (of the examples predicted as the class, the share that are),
  ``recall`` (of the class's examples, the share predicted as it), ``f1`` and ``support``
  (its examples); a ratio with nothing to divide by is 0 (scikit-learn's ``zero_division=0``);
- ``confusion_matrix``: rows are true classes, columns predicted ones, both in class order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: The most classes top_k_accuracy looks at (Keras' own default for top-k accuracy).
MAX_TOP_K = 5
#: Scores are clipped to this distance from 0 and 1 before the logarithm.
EPSILON = 1e-7
#: The metrics of an evaluation, in the order reports show them.
METRIC_NAMES = ("loss", "accuracy", "top_k_accuracy", "macro_f1")


def top_k_for(classes: int) -> int:
    """The k of top_k_accuracy: 5, or one fewer than the classes where there are fewer
    (with all classes it would always be 1), and never below 1."""
    return max(1, min(MAX_TOP_K, classes - 1))


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """(N, K) class probabilities of a model's outputs.

    One sigmoid unit (N, 1) becomes two columns (1 - p, p); outputs that are not
    probabilities already (negative, above 1, or rows not summing to 1: logits) go through a
    softmax.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape[1] == 1:
        positive = values[:, 0]
        if positive.min(initial=0.0) < 0 or positive.max(initial=0.0) > 1:
            positive = 1.0 / (1.0 + np.exp(-positive))
        return np.stack([1.0 - positive, positive], axis=1)
    sums = values.sum(axis=1)
    if (
        values.min(initial=0.0) < 0
        or values.max(initial=0.0) > 1
        or not np.allclose(sums, 1.0, atol=1e-3)
    ):
        shifted = np.exp(values - values.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))
    return values


def score(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Metrics, per-class figures and the confusion matrix (see the module's doc).

    Args:
        labels: (N,) true class indices into ``class_names``.
        probabilities: (N, K) class probabilities (as_probabilities), K = len(class_names).
        class_names: The classes in label order.

    Returns:
        ``{"examples", "class_names", "top_k", "metrics", "per_class", "confusion_matrix"}``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes = len(class_names)
    if probabilities.shape != (len(labels), classes):
        raise ValueError(
            f"scores of shape {probabilities.shape} for {len(labels)} examples of {classes} classes"
        )
    predicted = probabilities.argmax(axis=1) if len(labels) else np.zeros(0, dtype=np.int64)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    precision = _ratio(true_positive, predicted_count)
    recall = _ratio(true_positive, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    k = top_k_for(classes)
    # The true class is in the top k where fewer than k classes score strictly higher.
    true_scores = probabilities[np.arange(len(labels)), labels]
    higher = (probabilities > true_scores[:, None]).sum(axis=1)
    clipped = np.clip(true_scores, EPSILON, 1.0 - EPSILON)
    metrics = {
        "loss": _mean(-np.log(clipped)),
        "accuracy": _mean(predicted == labels),
        "top_k_accuracy": _mean(higher < k),
        "macro_f1": _mean(f1),
    }
    return {
        "examples": len(labels),
        "class_names": list(class_names),
        "top_k": k,
        "metrics": metrics,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
    }


def deltas(new: dict[str, Any], champion: dict[str, Any]) -> dict[str, float]:
    """New minus champion, per metric."""
    return {name: new["metrics"][name] - champion["metrics"][name] for name in METRIC_NAMES}


def per_class_deltas(new: dict[str, Any], champion: dict[str, Any]) -> dict[str, dict[str, float]]:
    """New minus champion, per class: precision, recall and F1."""
    return {
        name: {
            figure: new["per_class"][name][figure] - champion["per_class"][name][figure]
            for figure in ("precision", "recall", "f1")
        }
        for name in new["per_class"]
    }


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    top = np.asarray(top, dtype=np.float64)
    bottom = np.asarray(bottom, dtype=np.float64)
    out = np.zeros_like(top)
    np.divide(top, bottom, out=out, where=bottom > 0)
    return out


def _mean(values: np.ndarray) -> float:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()) if array.size else 0.0
