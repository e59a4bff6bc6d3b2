"""Evaluation figures of a classifier on labeled rows. Pure."""

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def evaluate(y_true: NDArray[Any], probabilities: NDArray[np.float64], labels: list[str]) -> dict[str, Any]:
    """accuracy, macro F1 over the labels present, log-free summary and the confusion matrix."""
    if len(y_true) == 0:
        return {"n": 0, "accuracy": None, "f1_macro": None, "confusion_matrix": None}
    predicted = np.asarray(labels, dtype=object)[probabilities.argmax(axis=1)]
    present = sorted(set(y_true) | set(predicted), key=labels.index)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "f1_macro": float(f1_score(y_true, predicted, labels=present, average="macro", zero_division=0)),
        "confusion_matrix": {
            "labels": labels,
            "matrix": confusion_matrix(y_true, predicted, labels=labels).tolist(),
        },
    }
