"""Evaluation figures of a classifier on labeled rows, overall and per slice. Pure."""

from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

METRICS = ("accuracy", "f1_macro")
# At most this many values of one field get a slice of their own (the most frequent ones).
MAX_SLICES_PER_FIELD = 50


def predicted_labels(probabilities: NDArray[np.float64], labels: list[str]) -> NDArray[Any]:
    return np.asarray(labels, dtype=object)[probabilities.argmax(axis=1)] if len(probabilities) else np.array([])


def score(metric: str, y_true: NDArray[Any], predicted: NDArray[Any], labels: list[str]) -> float | None:
    """``metric`` of ``predicted`` against ``y_true``; None on no rows."""
    if len(y_true) == 0:
        return None
    if metric == "accuracy":
        return float(accuracy_score(y_true, predicted))
    order = {label: i for i, label in enumerate(labels)}
    present = sorted(set(y_true) | set(predicted), key=lambda label: order.get(label, len(order)))
    return float(f1_score(y_true, predicted, labels=present, average="macro", zero_division=0))


def evaluate(y_true: NDArray[Any], probabilities: NDArray[np.float64], labels: list[str]) -> dict[str, Any]:
    """accuracy, macro F1 over the labels present, and the confusion matrix (rows: true labels)."""
    if len(y_true) == 0:
        return {"n": 0, "accuracy": None, "f1_macro": None, "confusion_matrix": None}
    predicted = predicted_labels(probabilities, labels)
    return {
        "n": len(y_true),
        "accuracy": score("accuracy", y_true, predicted, labels),
        "f1_macro": score("f1_macro", y_true, predicted, labels),
        "confusion_matrix": {
            "labels": labels,
            "matrix": confusion_matrix(y_true, predicted, labels=labels).tolist(),
        },
    }


def slices(
    *,
    metric: str,
    y_true: NDArray[Any],
    challenger: NDArray[Any],
    champion: NDArray[Any] | None,
    groups: dict[str, list[str]],
    labels: list[str],
) -> list[dict[str, Any]]:
    """``metric`` of the challenger's (and the champion's) predictions on each slice: the rows
    sharing one value of one group (a categorical field, the selection reason), the most frequent
    MAX_SLICES_PER_FIELD values of each group, largest first.

    Returns ``[{"slice": "colour=red", "group", "value", "n", "challenger", "champion"}]``.
    """
    out: list[dict[str, Any]] = []
    for group, values in groups.items():
        column = np.asarray(values, dtype=object)
        for value, n in Counter(values).most_common(MAX_SLICES_PER_FIELD):
            mask = column == value
            out.append(
                {
                    "slice": f"{group}={value}",
                    "group": group,
                    "value": value,
                    "n": int(n),
                    "challenger": score(metric, y_true[mask], challenger[mask], labels),
                    "champion": score(metric, y_true[mask], champion[mask], labels) if champion is not None else None,
                }
            )
    return out
