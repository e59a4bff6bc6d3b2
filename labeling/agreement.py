"""Agreement between annotators: Krippendorff's alpha (nominal), Fleiss' kappa and pairwise
Cohen's kappa, overall and per label. Pure: no ORM.

Answers come as in ``labeling.consensus``: three equal-length integer arrays ``items``,
``annotators`` and ``labels`` (indices ``0..n-1``), one entry per answer. An annotator answers an
item at most once (the caller keeps one answer per pair, e.g. the latest); a repeat is refused.
Items need not get the same number of answers, and most annotators answer only some items.

- ``krippendorff_alpha(items, labels, n_items=, n_labels=, one_vs_rest=None)``: nominal alpha from the coincidence
  matrix. Items with a single answer have nothing to pair with and drop out, as in Krippendorff's
  definition (and the ``krippendorff`` package).
- ``fleiss_kappa(items, labels, n_items=, n_labels=, one_vs_rest=None)``: Fleiss (1971) over the items with at least two
  answers. With the same number of answers on every item it is Fleiss' kappa exactly (statsmodels'
  ``fleiss_kappa``); with unequal numbers, each item's observed agreement is over its own answer
  pairs and the category shares are over all those answers (the usual generalization).
- ``cohen_kappas(items, annotators, labels, n_items=, n_annotators=, n_labels=, one_vs_rest=None)
  -> PairwiseKappa``: Cohen's kappa
  for every pair of annotators over the items both answered (scikit-learn's ``cohen_kappa_score``),
  the number of those items, and their mean weighted by it.
- ``agreement(items, annotators, labels, n_items=, n_annotators=, n_labels=) -> Agreement``: all of it,
  overall and per label.

Per label ``c`` each metric is computed on the one-vs-rest binarized answers (``label == c`` against
everything else): how well annotators agree on whether an item is ``c``. A metric that is 0/0 on
the data (everyone gave the same answer, so chance agreement is perfect too; no item with two
answers; no pair of annotators sharing an item) is NaN, never a made-up 0 or 1.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.setflags(write=False)
    return array


def _indices(values: ArrayLike, size: int, what: str) -> NDArray[np.intp]:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{what} must be a 1-D array of integer indices")
    out = array.astype(np.intp)
    if out.size and (out.min() < 0 or out.max() >= size):
        raise ValueError(f"{what} must lie in 0..{size - 1}")
    return out


def _value_counts(items: ArrayLike, labels: ArrayLike, n_items: int, n_labels: int) -> NDArray[np.float64]:
    """(n_items, n_labels): how many answers each item got for each label."""
    item_idx = _indices(items, n_items, "items")
    label_idx = _indices(labels, n_labels, "labels")
    if item_idx.shape != label_idx.shape:
        raise ValueError("items and labels must have the same length")
    flat = np.bincount(item_idx * n_labels + label_idx, minlength=n_items * n_labels)
    return flat.reshape(n_items, n_labels).astype(np.float64)


def _one_vs_rest(counts: NDArray[np.float64]) -> list[NDArray[np.float64]]:
    """Per label c: (n_items, 2) counts of [answers c, answers not c]."""
    totals = counts.sum(axis=1)
    return [np.stack([counts[:, c], totals - counts[:, c]], axis=1) for c in range(counts.shape[1])]


def _alpha(counts: NDArray[np.float64]) -> float:
    per_item = counts.sum(axis=1)
    pairable = per_item >= 2
    values = counts[pairable]
    if not pairable.any():
        return float("nan")
    weight = 1.0 / (per_item[pairable] - 1.0)
    # Coincidences o[c, k] = sum over items of (n_c * n_k - [c == k] * n_c) / (m - 1).
    coincidence = (values * weight[:, None]).T @ values - np.diag(weight @ values)
    marginal = coincidence.sum(axis=0)
    total = marginal.sum()
    expected = (np.outer(marginal, marginal) - np.diag(marginal)) / (total - 1.0)
    disagreement = 1.0 - np.eye(len(marginal))
    observed_d = float((coincidence * disagreement).sum())
    expected_d = float((expected * disagreement).sum())
    return 1.0 - observed_d / expected_d if expected_d > 0 else float("nan")


def _fleiss(counts: NDArray[np.float64]) -> float:
    per_item = counts.sum(axis=1)
    rated = per_item >= 2
    if not rated.any():
        return float("nan")
    table, m = counts[rated], per_item[rated]
    observed = float((((table**2).sum(axis=1) - m) / (m * (m - 1.0))).mean())
    shares = table.sum(axis=0) / m.sum()
    chance = float((shares**2).sum())
    return (observed - chance) / (1.0 - chance) if chance < 1.0 else float("nan")


def _counts_for(
    items: ArrayLike, labels: ArrayLike, n_items: int, n_labels: int, one_vs_rest: int | None
) -> NDArray[np.float64]:
    counts = _value_counts(items, labels, n_items, n_labels)
    if one_vs_rest is None:
        return counts
    if not 0 <= one_vs_rest < n_labels:
        raise ValueError(f"one_vs_rest must lie in 0..{n_labels - 1}")
    return _one_vs_rest(counts)[one_vs_rest]


def krippendorff_alpha(
    items: ArrayLike, labels: ArrayLike, *, n_items: int, n_labels: int, one_vs_rest: int | None = None
) -> float:
    """Krippendorff's alpha, nominal; with ``one_vs_rest=c``, on the answers binarized to ``label == c``."""
    return _alpha(_counts_for(items, labels, n_items, n_labels, one_vs_rest))


def fleiss_kappa(
    items: ArrayLike, labels: ArrayLike, *, n_items: int, n_labels: int, one_vs_rest: int | None = None
) -> float:
    """Fleiss' kappa over the items with at least two answers; with ``one_vs_rest=c``, on the
    answers binarized to ``label == c``."""
    return _fleiss(_counts_for(items, labels, n_items, n_labels, one_vs_rest))


@dataclass(frozen=True, eq=False)
class PairwiseKappa:
    kappa: NDArray[np.float64]  # (n_annotators, n_annotators), symmetric; NaN on the diagonal and where undefined
    shared: NDArray[np.int64]  # (n_annotators, n_annotators) items both annotators answered
    mean: float  # mean of the defined kappas, each pair weighted by its shared items
    n_pairs: int  # pairs with a defined kappa


def _answer_pairs(
    item_idx: NDArray[np.intp], annotator_idx: NDArray[np.intp]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Positions (j, j2) of every two answers on the same item, annotator of j < annotator of j2.
    Loops over the offset within an item (at most the largest number of answers on one item), not
    over answers."""
    order = np.lexsort((annotator_idx, item_idx))
    sorted_items = item_idx[order]
    firsts: list[NDArray[np.intp]] = []
    seconds: list[NDArray[np.intp]] = []
    for offset in range(1, order.size):
        same = sorted_items[offset:] == sorted_items[:-offset]
        if not same.any():
            break
        firsts.append(order[:-offset][same])
        seconds.append(order[offset:][same])
    if not firsts:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    return np.concatenate(firsts), np.concatenate(seconds)


def _kappas_from_pairs(
    rater_a: NDArray[np.intp],
    rater_b: NDArray[np.intp],
    label_a: NDArray[np.intp],
    label_b: NDArray[np.intp],
    n_annotators: int,
    n_labels: int,
) -> PairwiseKappa:
    kappa = np.full((n_annotators, n_annotators), np.nan)
    shared = np.zeros((n_annotators, n_annotators), dtype=np.int64)
    pair_key = rater_a * n_annotators + rater_b
    pairs, pair_of = np.unique(pair_key, return_inverse=True)
    # confusion[p, la, lb]: items where pair p's first annotator said la and the second lb.
    confusion = np.bincount(
        (pair_of * n_labels + label_a) * n_labels + label_b, minlength=pairs.size * n_labels * n_labels
    ).reshape(pairs.size, n_labels, n_labels)
    n = confusion.sum(axis=(1, 2)).astype(np.float64)
    expected = np.einsum("pa,pb->pab", confusion.sum(axis=2), confusion.sum(axis=1)) / n[:, None, None]
    disagreement = 1.0 - np.eye(n_labels)
    observed_d = (confusion * disagreement).sum(axis=(1, 2))
    expected_d = (expected * disagreement).sum(axis=(1, 2))
    # The same form as scikit-learn's cohen_kappa_score, so the two agree to rounding.
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(expected_d > 0, 1.0 - observed_d / expected_d, np.nan)
    first, second = np.divmod(pairs, n_annotators)
    kappa[first, second] = kappa[second, first] = values
    shared[first, second] = shared[second, first] = n.astype(np.int64)
    defined = ~np.isnan(values)
    mean = float(np.average(values[defined], weights=n[defined])) if defined.any() else float("nan")
    return PairwiseKappa(
        kappa=_frozen(kappa), shared=_frozen(shared), mean=mean, n_pairs=int(np.count_nonzero(defined))
    )


def _checked(
    items: ArrayLike, annotators: ArrayLike, labels: ArrayLike, n_items: int, n_annotators: int, n_labels: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    item_idx = _indices(items, n_items, "items")
    annotator_idx = _indices(annotators, n_annotators, "annotators")
    label_idx = _indices(labels, n_labels, "labels")
    if not item_idx.shape == annotator_idx.shape == label_idx.shape:
        raise ValueError("items, annotators and labels must have the same length")
    if np.unique(item_idx * n_annotators + annotator_idx).size != item_idx.size:
        raise ValueError("an annotator can answer an item only once")
    return item_idx, annotator_idx, label_idx


def cohen_kappas(
    items: ArrayLike,
    annotators: ArrayLike,
    labels: ArrayLike,
    *,
    n_items: int,
    n_annotators: int,
    n_labels: int,
    one_vs_rest: int | None = None,
) -> PairwiseKappa:
    """Cohen's kappa of every pair of annotators over the items both answered; with
    ``one_vs_rest=c``, on the answers binarized to ``label == c``."""
    item_idx, annotator_idx, label_idx = _checked(items, annotators, labels, n_items, n_annotators, n_labels)
    if one_vs_rest is not None:
        if not 0 <= one_vs_rest < n_labels:
            raise ValueError(f"one_vs_rest must lie in 0..{n_labels - 1}")
        label_idx = (label_idx == one_vs_rest).astype(np.intp)
        n_labels = 2
    first, second = _answer_pairs(item_idx, annotator_idx)
    return _kappas_from_pairs(
        annotator_idx[first], annotator_idx[second], label_idx[first], label_idx[second], n_annotators, n_labels
    )


@dataclass(frozen=True, eq=False)
class Agreement:
    alpha: float  # Krippendorff's alpha, nominal
    fleiss_kappa: float
    cohen: PairwiseKappa
    per_label_alpha: NDArray[np.float64]  # (n_labels,) one-vs-rest
    per_label_fleiss_kappa: NDArray[np.float64]  # (n_labels,) one-vs-rest
    per_label_cohen: NDArray[np.float64]  # (n_labels,) one-vs-rest, pair-weighted mean as in PairwiseKappa.mean
    n_items: int  # items with at least two answers: the ones agreement is measured on
    n_answers: int  # answers on those items


def agreement(
    items: ArrayLike, annotators: ArrayLike, labels: ArrayLike, *, n_items: int, n_annotators: int, n_labels: int
) -> Agreement:
    """Every agreement metric, overall and per label, from one set of answers."""
    item_idx, annotator_idx, label_idx = _checked(items, annotators, labels, n_items, n_annotators, n_labels)
    counts = _value_counts(item_idx, label_idx, n_items, n_labels)
    binarized = _one_vs_rest(counts)
    first, second = _answer_pairs(item_idx, annotator_idx)
    raters = annotator_idx[first], annotator_idx[second]
    per_label_cohen = [
        _kappas_from_pairs(
            *raters, (label_idx[first] == c).astype(np.intp), (label_idx[second] == c).astype(np.intp), n_annotators, 2
        ).mean
        for c in range(n_labels)
    ]
    per_item = counts.sum(axis=1)
    return Agreement(
        alpha=_alpha(counts),
        fleiss_kappa=_fleiss(counts),
        cohen=_kappas_from_pairs(*raters, label_idx[first], label_idx[second], n_annotators, n_labels),
        per_label_alpha=_frozen(np.array([_alpha(b) for b in binarized])),
        per_label_fleiss_kappa=_frozen(np.array([_fleiss(b) for b in binarized])),
        per_label_cohen=_frozen(np.array(per_label_cohen)),
        n_items=int(np.count_nonzero(per_item >= 2)),
        n_answers=int(per_item[per_item >= 2].sum()),
    )
