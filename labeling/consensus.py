"""Merging annotators' answers into labels, with a confidence for each. Pure: no ORM.

Two ways in:

- ``majority_vote(answers)`` merges the answers on one sample (label names in, a ``Consensus`` out).
- The array functions merge a whole project at once. Answers come as three equal-length integer
  arrays, one entry per answer, in the order the answers were given:
  ``items[j]`` in ``0..n_items-1``, ``annotators[j]`` in ``0..n_annotators-1``, ``labels[j]`` in
  ``0..n_labels-1``. The caller maps its ids to these indices (``np.unique(ids, return_inverse=True)``
  does it) and back.

  - ``vote_counts(items, labels, n_items=, n_labels=)``: the (n_items, n_labels) answer counts.
  - ``majority_votes(items, labels, n_items=, n_labels=) -> Votes``: vote counts, the winning label,
    its share of the votes and whether it was tied, per item; ties go to the label answered first,
    as in ``majority_vote``.
  - ``dawid_skene(items, annotators, labels, n_items=, n_annotators=, n_labels=, gold_items=(),
    gold_labels=(), max_iter=200, tol=1e-6, smoothing=0.5, diagonal=1.0, shrinkage=0.0) -> DawidSkene``:
    expectation-maximization over one confusion matrix per annotator (Dawid & Skene, 1979), started
    from the soft majority vote. Gold items (known labels, two parallel arrays) are clamped to their
    label, so they score the annotators who answered them. A Dirichlet prior (``smoothing``
    pseudo-answers in every cell, ``diagonal`` more on the correct answer) keeps annotators with
    few answers from getting degenerate matrices: with no answers an annotator's matrix is the
    prior's, with few it stays close to it.
  - ``review_selection(confidence=, threshold=, tied=None, n_answers=None) -> ReviewSelection``: the
    items that need a reviewer: majority-vote ties and labels whose confidence is below a threshold.
  - ``posteriors_given(items, annotators, labels, n_items=, confusion=, priors=)``: one E-step of
    Dawid-Skene with the confusion matrices and priors held fixed (e.g. those of an earlier
    estimate): P(true label | answers) per item, without re-estimating anything. Cheap enough for
    one task's answers on the answer path. ``prior_confusion(n_labels)`` is the matrix
    ``dawid_skene`` gives an annotator it has no answers from (the Dirichlet prior's mean).
  - ``top_is_tied(scores)``: per row, whether another column equals the row's maximum.

Confusion matrices are indexed ``[annotator, true label, answered label]``; each row sums to 1. An
annotator's estimated accuracy is ``sum_k priors[k] * confusion[a, k, k]``: the chance that they give
the true label on an item drawn from the class priors. Result arrays are read-only.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

_Scalar = TypeVar("_Scalar", bound=np.generic)


@dataclass(frozen=True)
class Consensus:
    label: str
    confidence: float  # share of the answers that agree with ``label``
    n_annotations: int
    tied: bool  # another label had as many votes


def majority_vote(answers: Sequence[str]) -> Consensus:
    """The most frequent answer; a tie goes to the label answered first among the tied ones."""
    if not answers:
        raise ValueError("majority_vote needs at least one answer")
    counts = Counter(answers)
    top = max(counts.values())
    tied_labels = {label for label, n in counts.items() if n == top}
    winner = next(label for label in answers if label in tied_labels)
    return Consensus(label=winner, confidence=top / len(answers), n_annotations=len(answers), tied=len(tied_labels) > 1)


def _frozen(array: NDArray[_Scalar]) -> NDArray[_Scalar]:
    # The result dataclasses are frozen; read-only arrays make that hold for their contents too.
    array.setflags(write=False)
    return array


def _index_array(values: ArrayLike, size: int, what: str) -> NDArray[np.intp]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must hold integer indices")
    out = array.astype(np.intp)
    if out.size and (out.min() < 0 or out.max() >= size):
        raise ValueError(f"{what} must lie in 0..{size - 1}")
    return out


def _answers(
    items: ArrayLike, labels: ArrayLike, n_items: int, n_labels: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    if n_items < 0 or n_labels < 1:
        raise ValueError("n_items must be >= 0 and n_labels >= 1")
    item_idx = _index_array(items, n_items, "items")
    label_idx = _index_array(labels, n_labels, "labels")
    if item_idx.shape != label_idx.shape:
        raise ValueError("items and labels must have the same length")
    return item_idx, label_idx


def vote_counts(items: ArrayLike, labels: ArrayLike, *, n_items: int, n_labels: int) -> NDArray[np.int64]:
    """How many answers each item got for each label, shape (n_items, n_labels)."""
    item_idx, label_idx = _answers(items, labels, n_items, n_labels)
    flat = np.bincount(item_idx * n_labels + label_idx, minlength=n_items * n_labels)
    return flat.reshape(n_items, n_labels).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Votes:
    counts: NDArray[np.int64]  # (n_items, n_labels)
    labels: NDArray[np.intp]  # (n_items,), -1 for an item without answers
    confidence: NDArray[np.float64]  # (n_items,) share of the item's answers that agree with its label; 0 without
    tied: NDArray[np.bool_]  # (n_items,) another label had as many votes
    n_answers: NDArray[np.int64]  # (n_items,)


def majority_votes(items: ArrayLike, labels: ArrayLike, *, n_items: int, n_labels: int) -> Votes:
    """``majority_vote`` for every item at once; ties go to the tied label answered first (lowest
    position in the arrays), so the two functions agree on answers given in the same order."""
    item_idx, label_idx = _answers(items, labels, n_items, n_labels)
    counts = vote_counts(item_idx, label_idx, n_items=n_items, n_labels=n_labels)
    n_answers = counts.sum(axis=1)
    top = counts.max(axis=1, initial=0)
    is_top = (counts == top[:, None]) & (top[:, None] > 0)
    first_seen = np.full((n_items, n_labels), np.iinfo(np.intp).max, dtype=np.intp)
    np.minimum.at(first_seen, (item_idx, label_idx), np.arange(item_idx.size, dtype=np.intp))
    winner = np.where(is_top, first_seen, np.iinfo(np.intp).max).argmin(axis=1)
    answered = n_answers > 0
    return Votes(
        counts=_frozen(counts),
        labels=_frozen(np.where(answered, winner, -1).astype(np.intp)),
        confidence=_frozen(np.divide(top, n_answers, out=np.zeros(n_items), where=answered)),
        tied=_frozen(is_top.sum(axis=1) > 1),
        n_answers=_frozen(n_answers),
    )


@dataclass(frozen=True, eq=False)
class DawidSkene:
    posteriors: NDArray[np.float64]  # (n_items, n_labels) P(true label | answers); the priors for unanswered items
    labels: NDArray[np.intp]  # (n_items,) most probable label
    confidence: NDArray[np.float64]  # (n_items,) its posterior probability
    n_answers: NDArray[np.int64]  # (n_items,)
    confusion: NDArray[np.float64]  # (n_annotators, n_labels, n_labels) P(answer | true label), [a, true, answered]
    accuracy: NDArray[np.float64]  # (n_annotators,) P(answer is the true label) for an item drawn from the priors
    annotator_answers: NDArray[np.int64]  # (n_annotators,)
    priors: NDArray[np.float64]  # (n_labels,) class frequencies
    iterations: int  # E-steps run
    converged: bool  # the posteriors moved by less than ``tol`` in the last iteration
    log_likelihood: float  # log P(answers | confusion, priors), gold items at their known label


def _one_coin(counts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each annotator's confusion matrix under the one-coin model: its overall accuracy on the
    diagonal and its errors spread evenly over the other labels (rows sum to 1)."""
    n_labels = counts.shape[1]
    accuracy = np.trace(counts, axis1=1, axis2=2) / counts.sum(axis=(1, 2))
    error = (1.0 - accuracy) / max(n_labels - 1, 1)
    eye = np.eye(n_labels)
    out: NDArray[np.float64] = accuracy[:, None, None] * eye + error[:, None, None] * (1.0 - eye)
    return out


_FEW_COLUMNS = 32


def _row_max(values: NDArray[np.float64]) -> NDArray[np.float64]:
    if values.shape[1] > _FEW_COLUMNS or values.shape[1] == 0:
        out: NDArray[np.float64] = values.max(axis=1, initial=-np.inf)
        return out
    top = values[:, 0].copy()
    for column in range(1, values.shape[1]):
        np.maximum(top, values[:, column], out=top)
    return top


def _row_sum(values: NDArray[np.float64]) -> NDArray[np.float64]:
    if values.shape[1] > _FEW_COLUMNS or values.shape[1] == 0:
        out: NDArray[np.float64] = values.sum(axis=1)
        return out
    total = values[:, 0].copy()
    for column in range(1, values.shape[1]):
        total += values[:, column]
    return total


def dawid_skene(
    items: ArrayLike,
    annotators: ArrayLike,
    labels: ArrayLike,
    *,
    n_items: int,
    n_annotators: int,
    n_labels: int,
    gold_items: ArrayLike = (),
    gold_labels: ArrayLike = (),
    max_iter: int = 200,
    tol: float = 1e-6,
    smoothing: float = 0.5,
    diagonal: float = 1.0,
    shrinkage: float = 0.0,
) -> DawidSkene:
    """Dawid-Skene consensus for all items at once, started from the (soft) majority vote.

    Each iteration is one M-step (confusion matrices and class priors from the current posteriors,
    with the Dirichlet pseudo-counts ``smoothing`` in every cell plus ``diagonal`` on the correct
    answer) and one E-step (posteriors from them). Gold items are held at their known label
    throughout. Stops after ``max_iter`` iterations or once no posterior moved by ``tol`` or more.
    Answers by the same annotator on the same item count as independent answers.
    Cost per iteration: O(answers * n_labels + n_annotators * n_labels**2), with no Python loop
    over answers.
    """
    item_idx, label_idx = _answers(items, labels, n_items, n_labels)
    annotator_idx = _index_array(annotators, n_annotators, "annotators")
    if annotator_idx.shape != item_idx.shape:
        raise ValueError("items, annotators and labels must have the same length")
    gold_item_idx, gold_label_idx = _answers(gold_items, gold_labels, n_items, n_labels)
    if max_iter < 1 or min(tol, smoothing, diagonal, shrinkage) < 0:
        raise ValueError("max_iter must be >= 1 and tol, smoothing, diagonal, shrinkage >= 0")
    if len(np.unique(gold_item_idx)) != gold_item_idx.size:
        raise ValueError("a gold item can have only one known label")
    if smoothing == 0 and diagonal == 0:
        # log(0) in the E-step for a label an annotator never gave: one answer could veto a class.
        smoothing = 1e-9

    counts = vote_counts(item_idx, label_idx, n_items=n_items, n_labels=n_labels).astype(np.float64)
    n_answers = counts.sum(axis=1)
    gold = np.zeros((n_items, n_labels))
    gold[gold_item_idx, gold_label_idx] = 1.0
    is_gold = gold.any(axis=1)
    # Unanswered non-gold items carry no evidence; leaving them out of the priors keeps the priors
    # those of the labeled population instead of pulling them towards their own initial guess.
    informative = (n_answers > 0) | is_gold

    posteriors = np.divide(
        counts, n_answers[:, None], out=np.full_like(counts, 1.0 / n_labels), where=n_answers[:, None] > 0
    )
    posteriors[is_gold] = gold[is_gold]

    pseudo = np.full((n_labels, n_labels), smoothing) + diagonal * np.eye(n_labels)
    # incidence[i, a * n_labels + l]: how often annotator a answered l on item i. Both EM steps are
    # products with this sparse matrix, so an iteration costs O(answers * n_labels).
    incidence = sparse.csr_matrix(
        (np.ones(item_idx.size), (item_idx, annotator_idx * n_labels + label_idx)),
        shape=(n_items, n_annotators * n_labels),
    )
    incidence_t = incidence.T.tocsr()
    converged = False
    iterations = 0
    # Per iteration the work is a few passes over (n_items, n_labels) arrays; these keep each pass
    # cheap: a dot product for the class mass (a boolean mask would copy the rows), gold rows by
    # index, and row maxima and sums over the few label columns (numpy's reductions along a short
    # last axis cost several times more).
    informative_weight = informative.astype(np.float64)
    gold_rows = np.flatnonzero(is_gold)
    gold_values = gold[gold_rows]
    for _ in range(max_iter):
        iterations += 1
        # M-step: expected counts of (annotator, answered, true) under the current posteriors.
        soft = np.asarray(incidence_t @ posteriors).reshape(n_annotators, n_labels, n_labels)
        confusion = soft.transpose(0, 2, 1) + pseudo
        if shrinkage > 0:
            confusion += shrinkage * _one_coin(confusion)
        confusion /= confusion.sum(axis=2, keepdims=True)
        # One pseudo-item per class keeps a class that no item currently favours possible.
        class_mass = informative_weight @ posteriors + 1.0
        priors = class_mass / class_mass.sum()

        # E-step, in logs: a product of many small probabilities underflows.
        log_confusion = np.log(confusion).transpose(0, 2, 1).reshape(n_annotators * n_labels, n_labels)
        log_joint = np.asarray(incidence @ log_confusion)
        log_joint += np.log(priors)
        top = _row_max(log_joint)
        joint = np.exp(log_joint - top[:, None])
        total = _row_sum(joint)
        updated = joint / total[:, None]
        updated[gold_rows] = gold_values
        shift = float(np.abs(updated - posteriors).max(initial=0.0))
        posteriors = updated
        if shift < tol:
            converged = True
            break

    log_evidence = np.where(is_gold, (log_joint * gold).sum(axis=1), top + np.log(total))
    accuracy = np.einsum("k,akk->a", priors, confusion)
    return DawidSkene(
        posteriors=_frozen(posteriors),
        labels=_frozen(posteriors.argmax(axis=1).astype(np.intp)),
        confidence=_frozen(posteriors.max(axis=1)),
        n_answers=_frozen(n_answers.astype(np.int64)),
        confusion=_frozen(confusion),
        accuracy=_frozen(accuracy),
        annotator_answers=_frozen(np.bincount(annotator_idx, minlength=n_annotators).astype(np.int64)),
        priors=_frozen(priors),
        iterations=iterations,
        converged=converged,
        log_likelihood=float(log_evidence[informative].sum()),
    )


def prior_confusion(n_labels: int, *, smoothing: float = 0.5, diagonal: float = 1.0) -> NDArray[np.float64]:
    """The confusion matrix ``dawid_skene`` (with the same prior) gives an annotator with no answers."""
    if n_labels < 1 or smoothing < 0 or diagonal < 0 or smoothing + diagonal == 0:
        raise ValueError("n_labels must be >= 1 and smoothing, diagonal >= 0, not both 0")
    pseudo = np.full((n_labels, n_labels), smoothing) + diagonal * np.eye(n_labels)
    out: NDArray[np.float64] = pseudo / pseudo.sum(axis=1, keepdims=True)
    return out


def posteriors_given(
    items: ArrayLike,
    annotators: ArrayLike,
    labels: ArrayLike,
    *,
    n_items: int,
    confusion: ArrayLike,
    priors: ArrayLike,
) -> NDArray[np.float64]:
    """P(true label | answers) per item, shape (n_items, n_labels), under fixed ``confusion``
    (n_annotators, n_labels, n_labels), indexed [annotator, true, answered], rows summing to 1) and
    class ``priors`` (n_labels,). Items without answers get the priors. Zeros in ``confusion`` are
    allowed (an answer then rules a class out), but not an item whose answers rule out every class."""
    matrices = np.asarray(confusion, dtype=np.float64)
    prior = np.asarray(priors, dtype=np.float64)
    if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2]:
        raise ValueError("confusion must have shape (n_annotators, n_labels, n_labels)")
    n_annotators, n_labels = matrices.shape[0], matrices.shape[1]
    if prior.shape != (n_labels,) or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError("priors must be (n_labels,) non-negative and not all 0")
    item_idx, label_idx = _answers(items, labels, n_items, n_labels)
    annotator_idx = _index_array(annotators, n_annotators, "annotators")
    if annotator_idx.shape != item_idx.shape:
        raise ValueError("items, annotators and labels must have the same length")
    with np.errstate(divide="ignore"):
        log_joint = np.tile(np.log(prior / prior.sum()), (n_items, 1))
        # matrices[a, :, l] for each answer: P(answered l | true k) over k, shape (answers, n_labels).
        np.add.at(log_joint, item_idx, np.log(matrices[annotator_idx, :, label_idx]))
    top = log_joint.max(axis=1, keepdims=True)
    if n_items and not np.isfinite(top).all():
        raise ValueError("the answers on some item rule out every label")
    joint = np.exp(log_joint - top)
    out: NDArray[np.float64] = joint / joint.sum(axis=1, keepdims=True)
    return out


def top_is_tied(scores: ArrayLike, *, tolerance: float = 1e-9) -> NDArray[np.bool_]:
    """Per row of ``scores`` (n, k): whether a second column is within ``tolerance`` of the maximum."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError("scores must be a 2-D array")
    if values.shape[1] < 2:
        return np.zeros(values.shape[0], dtype=bool)
    top_two = -np.partition(-values, 1, axis=1)[:, :2]
    out: NDArray[np.bool_] = (top_two[:, 0] - top_two[:, 1]) <= tolerance
    return out


@dataclass(frozen=True, eq=False)
class ReviewSelection:
    items: NDArray[np.intp]  # items to review, least confident first
    tied: NDArray[np.bool_]  # per selected item: its majority vote was tied
    low_confidence: NDArray[np.bool_]  # per selected item: its confidence is below the threshold


def review_selection(
    *,
    confidence: ArrayLike,
    threshold: float,
    tied: ArrayLike | None = None,
    n_answers: ArrayLike | None = None,
) -> ReviewSelection:
    """The items whose label a reviewer should confirm: ties (``Votes.tied``) and confidence below
    ``threshold`` (``Votes.confidence`` or ``DawidSkene.confidence``). Items without answers have no
    label to confirm and are never selected when ``n_answers`` is given. Least confident first, ties
    broken by item index, so the order is stable."""
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.ndim != 1:
        raise ValueError("confidence must be a 1-D array")
    is_tied = np.zeros(conf.shape, dtype=bool) if tied is None else np.asarray(tied, dtype=bool)
    answered = np.ones(conf.shape, dtype=bool) if n_answers is None else np.asarray(n_answers) > 0
    if is_tied.shape != conf.shape or answered.shape != conf.shape:
        raise ValueError("confidence, tied and n_answers must have the same length")
    low = conf < threshold
    picked = np.flatnonzero((is_tied | low) & answered)
    picked = picked[np.argsort(conf[picked], kind="stable")]
    return ReviewSelection(
        items=_frozen(picked.astype(np.intp)), tied=_frozen(is_tied[picked]), low_confidence=_frozen(low[picked])
    )
