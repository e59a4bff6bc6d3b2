"""Likely label errors, by confident learning (Northcutt, Jiang & Chuang, JAIR 2021). Pure: no ORM.

- ``out_of_fold_probabilities(make_estimator, X, y, n_classes=, n_splits=, shuffle=, seed=)``: predicted
  class probabilities for every row from a model that never saw that row (stratified K-fold
  ``cross_val_predict``), shape (n, n_classes). Labels are integer class indices ``0..n_classes-1``.
- ``out_of_fold_with(fit_predict, y, n_classes=, n_splits=, shuffle=, seed=)``: the same folds, with the
  fitting left to the caller: ``fit_predict(train_rows, test_rows)`` fits whatever model it likes on
  the training rows and returns its probabilities for the test rows (the product fits the
  project's own pipeline per fold this way).
- ``find_label_issues(probabilities, labels, unconfident_weight=) -> LabelIssues``: the rows whose given
  label is unlikely, most likely wrong first, each with a suggested label and a score.

How the finder decides, given out-of-fold probabilities ``p`` (n x k) and given labels ``y``:

1. Per-class thresholds ``t[j]``: the mean self-confidence ``p[i, y[i]]`` over the rows labeled ``j``.
2. The confident joint ``C[given, true]``: a row labeled ``i`` counts in ``C[i, j]`` for the most
   probable class ``j`` among those with ``p[., j] >= t[j]``; rows where no class reaches its
   threshold are unconfident and count nowhere. ``C`` scaled so that each row sums to the number of
   rows with that given label is the calibrated joint (cleanlab's).
3. The estimated number of errors ``n_estimated``: the off-diagonal mass of ``C`` plus
   ``unconfident_weight`` times what calibration adds to it. Calibration assumes the unconfident
   rows are wrong as often as the confident ones (weight 1, as in cleanlab), the raw joint that they
   are never wrong (weight 0). They are the rows where the model is unsure, which mixes real label
   errors with the model's own mistakes, so the default counts them at half that rate.
4. Each row's score, read as a probability that its label is wrong: ``(1 - p[i, y[i]]) ** gamma``,
   with ``gamma`` set so that the scores add up to ``n_estimated``. The rank is the self-confidence
   rank (on digits and breast_cancer it ranks label errors better than the normalized margin).
5. The flagged rows are the prefix of that ranking that maximizes the expected F1 against the
   scores, ``2 * sum(top scores) / (n_flagged + n_estimated)``: a row is kept while its score is
   high enough that adding it is expected to help, which makes the cut precise where the scores
   are spread out and generous where they are near 1. A row whose given label is its most probable
   class is never flagged.

Suggested label: the most probable class other than the given one.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.model_selection import StratifiedKFold, cross_val_predict


@dataclass(frozen=True, eq=False)
class LabelIssues:
    indices: NDArray[np.intp]  # flagged rows, most likely wrong first
    given: NDArray[np.intp]  # per flagged row: its given label
    suggested: NDArray[np.intp]  # per flagged row: the most probable other label
    score: NDArray[np.float64]  # per flagged row: estimated probability that the given label is wrong
    self_confidence: NDArray[np.float64]  # per flagged row: the predicted probability of the given label
    thresholds: NDArray[np.float64]  # (k,) per-class thresholds; NaN for a class nobody was given
    confident_joint: NDArray[np.int64]  # (k, k) [given, true] counts of the confident rows
    n_estimated: float  # estimated number of label errors among all rows


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.setflags(write=False)
    return array


def _calibrated_scores(badness: NDArray[np.float64], total: float) -> NDArray[np.float64]:
    """``badness ** gamma`` (``badness`` in [0, 1]) with ``gamma`` found by bisection so that the
    result sums to ``total``; a larger gamma pushes the middling rows towards 0 and keeps the
    clearly bad ones near 1."""
    positive = badness > 0
    certain = float(np.count_nonzero(badness >= 1.0))
    total = min(max(total, certain), float(np.count_nonzero(positive)))
    if total <= 0:
        return np.zeros_like(badness)
    low, high = -12.0, 12.0  # log2(gamma)
    for _ in range(80):
        middle = (low + high) / 2
        if float(np.power(badness[positive], 2.0**middle).sum()) > total:
            low = middle
        else:
            high = middle
    out = np.zeros_like(badness)
    out[positive] = np.power(badness[positive], 2.0 ** ((low + high) / 2))
    return out


def find_label_issues(probabilities: ArrayLike, labels: ArrayLike, *, unconfident_weight: float = 0.5) -> LabelIssues:
    """Rows whose given label is likely wrong (see the module docstring for the rule).
    ``probabilities``: out-of-fold predicted probabilities (n x k), rows summing to 1;
    ``labels``: given labels (n,), integers in ``0..k-1``."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError("probabilities must be (n, k) and labels (n,)")
    n, k = p.shape
    if n and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be integers in 0..{k - 1}")
    if not 0.0 <= unconfident_weight <= 1.0:
        raise ValueError("unconfident_weight must lie in [0, 1]")
    y = y.astype(np.intp)
    rows = np.arange(n)
    self_confidence = p[rows, y]

    given_counts = np.bincount(y, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        thresholds = np.bincount(y, weights=self_confidence, minlength=k) / given_counts
    # A class nobody was given has no threshold; no row is confidently of that class.
    reached = p >= np.where(np.isnan(thresholds), np.inf, thresholds)
    confident = reached.any(axis=1)
    true_guess = np.where(reached, p, -1.0).argmax(axis=1)
    joint = np.bincount(y[confident] * k + true_guess[confident], minlength=k * k).reshape(k, k)

    off_diagonal = float(joint.sum() - np.trace(joint))
    row_totals = joint.sum(axis=1)
    scale = np.divide(given_counts, row_totals, out=np.zeros(k), where=row_totals > 0)
    calibrated = joint * scale[:, None]
    calibrated_off = float(calibrated.sum() - np.trace(calibrated))
    n_estimated = off_diagonal + unconfident_weight * (calibrated_off - off_diagonal)

    others = p.copy()
    others[rows, y] = -np.inf
    suggested = others.argmax(axis=1) if k > 1 else np.zeros(n, dtype=np.intp)
    disputed = others.max(axis=1, initial=-np.inf) > self_confidence if k > 1 else np.zeros(n, dtype=bool)

    score = _calibrated_scores(np.clip(1.0 - self_confidence, 0.0, 1.0), n_estimated)
    order = np.lexsort((rows, -score))  # most likely wrong first, ties by row for a stable ranking
    expected_f1 = 2.0 * np.cumsum(score[order]) / (np.arange(1, n + 1) + score.sum()) if n else np.zeros(0)
    n_flagged = int(expected_f1.argmax()) + 1 if n and expected_f1.max() > 0 else 0
    flagged = order[:n_flagged]
    flagged = flagged[disputed[flagged]]

    return LabelIssues(
        indices=_frozen(flagged.astype(np.intp)),
        given=_frozen(y[flagged]),
        suggested=_frozen(suggested[flagged].astype(np.intp)),
        score=_frozen(score[flagged]),
        self_confidence=_frozen(self_confidence[flagged]),
        thresholds=_frozen(thresholds),
        confident_joint=_frozen(joint.astype(np.int64)),
        n_estimated=n_estimated,
    )


def out_of_fold_probabilities(
    make_estimator: Callable[[], Any],
    X: Any,
    y: ArrayLike,
    *,
    n_classes: int | None = None,
    n_splits: int = 5,
    shuffle: bool = True,
    seed: int = 0,
) -> NDArray[np.float64]:
    """Class probabilities for every row of ``X`` from an estimator (``make_estimator()``, cloned per
    fold) fitted on the other folds; columns are the classes ``0..n_classes-1``.

    Classes with fewer rows than folds are allowed: the folds become fewer (never more than the
    largest class has rows, never fewer than 2), a class that a training fold lacks gets
    probability 0 from that fold's model, and so a class with a single row is never predicted for
    it. With a single class present there is nothing to cross-validate: every row gets that class
    with probability 1. ``shuffle`` with ``seed`` breaks any order in the rows (by time, by source),
    which otherwise makes the folds differ more than new data would.
    """
    target, k = _targets(y, n_classes)
    out = np.zeros((target.size, k))
    present = np.unique(target)
    if present.size == 1:
        out[:, present[0]] = 1.0
        return out
    splitter = _splitter(target, n_splits, shuffle, seed)
    with warnings.catch_warnings():
        # Both warnings describe the rare-class handling documented above.
        warnings.filterwarnings("ignore", message="The least populated class in y", category=UserWarning)
        warnings.filterwarnings("ignore", message="Number of classes in training fold", category=RuntimeWarning)
        predicted = cross_val_predict(make_estimator(), X, target, cv=splitter, method="predict_proba")
    # cross_val_predict orders its columns by the classes present in y.
    out[:, present] = predicted
    return out


def _targets(y: ArrayLike, n_classes: int | None) -> tuple[NDArray[np.intp], int]:
    target = np.asarray(y)
    if target.ndim != 1 or (target.size and not np.issubdtype(target.dtype, np.integer)):
        raise ValueError("y must be a 1-D array of integer class indices")
    k = int(target.max()) + 1 if n_classes is None and target.size else int(n_classes or 0)
    if target.size and (target.min() < 0 or target.max() >= k):
        raise ValueError(f"y must lie in 0..{k - 1}")
    return target.astype(np.intp), k


def _splitter(target: NDArray[np.intp], n_splits: int, shuffle: bool, seed: int) -> StratifiedKFold:
    _, per_class = np.unique(target, return_counts=True)
    folds = min(n_splits, int(per_class.max()))
    if folds < 2:
        raise ValueError("cross-validation needs some class with at least two rows")
    return StratifiedKFold(n_splits=folds, shuffle=shuffle, random_state=seed if shuffle else None)


def out_of_fold_with(
    fit_predict: Callable[[NDArray[np.intp], NDArray[np.intp]], ArrayLike],
    y: ArrayLike,
    *,
    n_classes: int | None = None,
    n_splits: int = 5,
    shuffle: bool = True,
    seed: int = 0,
) -> NDArray[np.float64]:
    """``out_of_fold_probabilities`` with the same folds and rare-class rules, the model left to
    the caller: ``fit_predict(train_rows, test_rows)`` gets two arrays of row indices, fits on the
    first only and returns probabilities (len(test_rows), n_classes) for the second, columns the
    classes ``0..n_classes-1``."""
    target, k = _targets(y, n_classes)
    out = np.zeros((target.size, k))
    present = np.unique(target)
    if present.size == 0:
        return out
    if present.size == 1:
        out[:, present[0]] = 1.0
        return out
    splitter = _splitter(target, n_splits, shuffle, seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class in y", category=UserWarning)
        for train, test in splitter.split(np.zeros((target.size, 1)), target):
            predicted = np.asarray(fit_predict(train.astype(np.intp), test.astype(np.intp)), dtype=np.float64)
            if predicted.shape != (test.size, k):
                raise ValueError(f"fit_predict must return shape ({test.size}, {k}), got {predicted.shape}")
            out[test] = predicted
    return out
