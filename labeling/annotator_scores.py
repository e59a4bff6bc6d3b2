"""Per-annotator figures and agreement over time, from answer arrays. Pure: no ORM.

Answers come as in ``labeling.consensus``: equal-length integer arrays ``items``, ``annotators``,
``labels`` (indices), one entry per answer, in the order they were given; per item, optional
arrays of its known (gold) label and its final label (-1 for none).

- ``latest_per_pair(items, annotators, n_annotators=)``: positions of the answers to keep when each
  annotator may count once per item (the latest), in the input order.
- ``group_medians(groups, values, n_groups=)``: the median of ``values`` per group, NaNs ignored.
- ``annotator_scores(...) -> AnnotatorScores``: per annotator the number of answers, accuracy on
  gold items, agreement with the final labels, median time per answer.
- ``completion_buckets(items, times, n_items=, edges=)``: per item the bucket (between ``edges``) of
  its last answer, -1 for items without answers or outside the edges.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.setflags(write=False)
    return array


def _ints(values: ArrayLike, what: str) -> NDArray[np.intp]:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{what} must be a 1-D array of integers")
    return array.astype(np.intp)


def latest_per_pair(items: ArrayLike, annotators: ArrayLike, *, n_annotators: int) -> NDArray[np.intp]:
    """Positions of the last answer of each (item, annotator) pair, in increasing order."""
    item_idx, annotator_idx = _ints(items, "items"), _ints(annotators, "annotators")
    if item_idx.shape != annotator_idx.shape:
        raise ValueError("items and annotators must have the same length")
    key = item_idx.astype(np.int64) * max(n_annotators, 1) + annotator_idx
    reversed_key = key[::-1]
    _, first_from_end = np.unique(reversed_key, return_index=True)
    return np.sort(key.size - 1 - first_from_end).astype(np.intp)


def group_medians(groups: ArrayLike, values: ArrayLike, *, n_groups: int) -> NDArray[np.float64]:
    """Median of ``values`` in each group ``0..n_groups-1``; NaN values are left out, and a group
    without values gets NaN."""
    group_idx = _ints(groups, "groups")
    vals = np.asarray(values, dtype=np.float64)
    if vals.shape != group_idx.shape:
        raise ValueError("groups and values must have the same length")
    keep = ~np.isnan(vals)
    group_idx, vals = group_idx[keep], vals[keep]
    order = np.lexsort((vals, group_idx))
    group_idx, vals = group_idx[order], vals[order]
    counts = np.bincount(group_idx, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full(n_groups, np.nan)
    has = counts > 0
    low = starts[has] + (counts[has] - 1) // 2
    high = starts[has] + counts[has] // 2
    out[has] = (vals[low] + vals[high]) / 2.0
    return out


@dataclass(frozen=True, eq=False)
class AnnotatorScores:
    n_answers: NDArray[np.int64]  # (n_annotators,)
    n_gold: NDArray[np.int64]  # answers on gold items
    gold_correct: NDArray[np.int64]
    gold_accuracy: NDArray[np.float64]  # NaN without gold answers
    n_compared: NDArray[np.int64]  # answers compared with a final label
    agreement_with_consensus: NDArray[np.float64]  # NaN when nothing was compared
    median_duration_ms: NDArray[np.float64]  # NaN without timed answers


def annotator_scores(
    *,
    items: ArrayLike,
    annotators: ArrayLike,
    labels: ArrayLike,
    durations_ms: ArrayLike,
    n_annotators: int,
    gold_labels: ArrayLike,
    final_labels: ArrayLike,
    final_independent: ArrayLike,
) -> AnnotatorScores:
    """Per-annotator figures over all their answers.

    ``gold_labels`` (n_items,): the known label of each item, -1 when it is not gold: accuracy on
    gold counts every answer on a gold item. ``final_labels`` (n_items,): the item's final label,
    -1 for none; ``final_independent`` (n_items,): whether that label stands apart from any single
    answer (several answers went into it, or a reviewer or an import set it). Agreement with
    consensus compares an answer with its item's final label where that label is independent and
    the item is not gold: with one answer per item the answer is its own consensus, which would say
    nothing. ``durations_ms`` may hold NaN (not timed).
    """
    item_idx, annotator_idx, label_idx = _ints(items, "items"), _ints(annotators, "annotators"), _ints(labels, "labels")
    gold = _ints(gold_labels, "gold_labels")
    final = _ints(final_labels, "final_labels")
    independent = np.asarray(final_independent, dtype=bool)
    if not item_idx.shape == annotator_idx.shape == label_idx.shape:
        raise ValueError("items, annotators and labels must have the same length")
    if not gold.shape == final.shape == independent.shape:
        raise ValueError("gold_labels, final_labels and final_independent must have one entry per item")
    n_answers = np.bincount(annotator_idx, minlength=n_annotators).astype(np.int64)

    item_gold = gold[item_idx]
    on_gold = item_gold >= 0
    n_gold = np.bincount(annotator_idx[on_gold], minlength=n_annotators).astype(np.int64)
    gold_correct = np.bincount(
        annotator_idx[on_gold], weights=(label_idx[on_gold] == item_gold[on_gold]), minlength=n_annotators
    ).astype(np.int64)

    item_final = final[item_idx]
    compared = (item_final >= 0) & independent[item_idx] & ~on_gold
    n_compared = np.bincount(annotator_idx[compared], minlength=n_annotators).astype(np.int64)
    agreeing = np.bincount(
        annotator_idx[compared], weights=(label_idx[compared] == item_final[compared]), minlength=n_annotators
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        gold_accuracy = np.where(n_gold > 0, gold_correct / np.maximum(n_gold, 1), np.nan)
        agreement = np.where(n_compared > 0, agreeing / np.maximum(n_compared, 1), np.nan)
    return AnnotatorScores(
        n_answers=_frozen(n_answers),
        n_gold=_frozen(n_gold),
        gold_correct=_frozen(gold_correct),
        gold_accuracy=_frozen(gold_accuracy),
        n_compared=_frozen(n_compared),
        agreement_with_consensus=_frozen(agreement),
        median_duration_ms=_frozen(group_medians(annotator_idx, durations_ms, n_groups=n_annotators)),
    )


def completion_buckets(items: ArrayLike, times: ArrayLike, *, n_items: int, edges: ArrayLike) -> NDArray[np.intp]:
    """Per item, the index ``b`` with ``edges[b] <= last answer time < edges[b + 1]``; -1 for an item
    without answers or outside the edges. ``edges`` ascending, ``times`` in the same unit."""
    item_idx = _ints(items, "items")
    moments = np.asarray(times, dtype=np.float64)
    bounds = np.asarray(edges, dtype=np.float64)
    if moments.shape != item_idx.shape:
        raise ValueError("items and times must have the same length")
    last = np.full(n_items, -np.inf)
    np.maximum.at(last, item_idx, moments)
    bucket = np.searchsorted(bounds, last, side="right") - 1
    outside = (bucket < 0) | (bucket >= bounds.size - 1) | ~np.isfinite(last)
    return np.where(outside, -1, bucket).astype(np.intp)
