"""Batch-aware selection: the most uncertain samples, kept diverse, so that ten near-duplicates are
not labeled in a row. Pure numpy/scipy/scikit-learn: no ORM, no Django.

Uncertainty alone hands annotators a batch of near-copies of one confusing example: the first label
teaches the model what the other nine would. The batch-aware strategy takes the ``M`` most
uncertain rows of the pool (``M = candidate_factor * batch_size``; the work is on that candidate set,
never on the whole pool, so a pool of 1,000,000 rows costs one ``argpartition``) and chooses the batch
among them so that it spreads over the feature space.

Inputs
    ``features``: (n, d) rows of the pool in the space the model sees: the *transformed* features of
    the pipeline's preprocessor (``model.named_steps["features"].transform(X)``), a dense array or a
    ``scipy.sparse`` matrix (TF-IDF columns stay sparse). Distances are Euclidean there.
    ``uncertainty``: (n,) scores in [0, 1], higher = more worth a label (``feedback.uncertainty``).
    ``probabilities``: (n, k) class probabilities, only for ``gradient_embedding`` (BADGE's space, an
    alternative ``features``; it did worse than the plain features in the benchmark).

Methods (``select_batch(method=...)``)
    ``kmeans`` (the default, chosen by ``bench/active_learning.py``): uncertainty-weighted k-means of the
        candidates into ``batch_size`` clusters, one pick per cluster, the candidate nearest its centre
        (Zhdanov, "Diverse mini-batch active learning", 2019); handed out by uncertainty. With the 10x
        candidate set it needs 80 labels on digits where margin sampling (Labelloop's or modAL's)
        needs 106, and is never worse than random on breast_cancer, wine or Phishing.
    ``kcenter``: k-center greedy (Sener & Savarese, 2018) among the candidates, seeded by the already
        labeled rows when given: each pick is the candidate farthest from everything chosen or
        labeled, its distance weighted by ``uncertainty ** uncertainty_power``. Deterministic; handed
        out in pick order.
    ``kmeanspp``: k-means++ seeding (D² sampling) weighted by uncertainty: random, spread out.
    ``top``: the candidates by uncertainty alone (no diversity), for comparison.

Outputs
    ``Batch``: the chosen pool indices in hand-out order (first = hand out first), a priority per chosen
    row (strictly decreasing, all in (1, 2]) and the uncertainty of each chosen row.
    ``queue_priorities(uncertainty, batch)``: one float per pool row for a queue ordered by priority:
    the batch on top in its order, then every other row by its uncertainty (in [0, 1]).
"""

import warnings
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning

Method = Literal["kcenter", "kmeans", "kmeanspp", "top"]
METHODS: tuple[Method, ...] = ("kcenter", "kmeans", "kmeanspp", "top")
# A dense array or a scipy.sparse matrix; scipy ships no type hints, so to mypy this is Any.
Features: TypeAlias = Any


@dataclass(frozen=True)
class Batch:
    """A chosen batch. ``indices`` index the pool, in hand-out order; ``priorities`` decrease strictly
    along it and lie in (1, 2], above any uncertainty; ``uncertainty`` is each chosen row's score."""

    indices: NDArray[np.intp]
    priorities: NDArray[np.float64]
    uncertainty: NDArray[np.float64]


def top_candidates(
    uncertainty: NDArray[np.float64], m: int, exclude: NDArray[np.bool_] | None = None
) -> NDArray[np.intp]:
    """Indices of the ``m`` most uncertain rows, most uncertain first; ties go to the lower index, so
    the choice is reproducible. O(n) on the pool (argpartition), O(m log m) on the candidates."""
    u = np.asarray(uncertainty, dtype=np.float64)
    eligible = np.flatnonzero(~exclude) if exclude is not None else None
    values = u if eligible is None else u[eligible]
    m = min(m, len(values))
    if m <= 0:
        return np.empty(0, dtype=np.intp)
    if m < len(values):
        # The m-th largest value; every row above it is in, rows equal to it fill up by index.
        kth = np.partition(values, len(values) - m)[len(values) - m]
        above = np.flatnonzero(values > kth)
        equal = np.flatnonzero(values == kth)[: m - len(above)]
        picked = np.concatenate([above, equal])
    else:
        picked = np.arange(len(values))
    picked = picked[np.lexsort((picked, -values[picked]))]
    return (picked if eligible is None else eligible[picked]).astype(np.intp)


def _dense_or_csr(features: Features) -> Features:
    if sp.issparse(features):
        return sp.csr_matrix(features, dtype=np.float64)
    return np.asarray(features, dtype=np.float64)


def _rows(features: Features, indices: NDArray[np.intp]) -> Features:
    """The candidates' rows, taken before any conversion so a 1,000,000-row pool is never copied."""
    if sp.issparse(features):
        csr = features if features.format == "csr" else sp.csr_matrix(features)
        return sp.csr_matrix(csr[indices], dtype=np.float64)
    return np.asarray(np.asarray(features)[indices], dtype=np.float64)


def _row_norms(X: Features) -> NDArray[np.float64]:
    if sp.issparse(X):
        return np.asarray(X.multiply(X).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", X, X)


def _sq_distances_to(X: Features, norms: NDArray[np.float64], Y: Features) -> NDArray[np.float64]:
    """(len(X), len(Y)) squared Euclidean distances, by ||x||² + ||y||² - 2 x·y (sparse-friendly)."""
    cross = X @ Y.T
    cross = cross.toarray() if sp.issparse(cross) else np.asarray(cross)
    out = norms[:, None] + _row_norms(Y)[None, :] - 2.0 * cross
    return np.maximum(out, 0.0)


def _min_sq_distances(X: Features, norms: NDArray[np.float64], Y: Features) -> NDArray[np.float64]:
    """Squared distance from each row of X to its nearest row of Y, in chunks of Y so memory stays
    bounded when the labeled set is large."""
    best = np.full(X.shape[0], np.inf)
    chunk = max(1, 2_000_000 // max(1, X.shape[0]))
    for start in range(0, Y.shape[0], chunk):
        best = np.minimum(best, _sq_distances_to(X, norms, Y[start : start + chunk]).min(axis=1))
    return best


def _sq_distances_to_row(X: Features, norms: NDArray[np.float64], i: int) -> NDArray[np.float64]:
    """Squared distances of every row of X to row i. A matrix-vector product, done with einsum for
    dense X rather than BLAS gemv: on a busy 2-core machine BLAS threads spin-wait on products this
    small, which made a batch of 1,000 ten times slower."""
    cross = np.asarray(X @ X[i].T.toarray()).ravel() if sp.issparse(X) else np.einsum("ij,j->i", X, X[i])
    return np.maximum(norms + norms[i] - 2.0 * cross, 0.0)


def _kcenter(
    X: Features,
    weights: NDArray[np.float64],
    k: int,
    labeled: Features | None,
) -> NDArray[np.intp]:
    norms = _row_norms(X)
    n = X.shape[0]
    if labeled is not None and labeled.shape[0] > 0:
        nearest = _min_sq_distances(X, norms, labeled)
    else:
        nearest = np.full(n, np.inf)
    chosen = np.empty(k, dtype=np.intp)
    taken = np.zeros(n, dtype=bool)
    for step in range(k):
        # Nothing chosen or labeled yet: start from the most uncertain candidate.
        gain = weights.copy() if np.isinf(nearest).all() else np.sqrt(nearest) * weights
        gain[taken] = -np.inf
        pick = int(np.argmax(gain))
        chosen[step], taken[pick] = pick, True
        nearest = np.minimum(nearest, _sq_distances_to_row(X, norms, pick))
    return chosen


def _kmeanspp(X: Features, weights: NDArray[np.float64], k: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """k-means++ seeding with D² x weight sampling; the first seed is the most uncertain candidate."""
    norms = _row_norms(X)
    n = X.shape[0]
    taken = np.zeros(n, dtype=bool)
    chosen = np.empty(k, dtype=np.intp)
    first = int(np.argmax(weights))
    chosen[0], taken[first] = first, True
    nearest = _sq_distances_to_row(X, norms, first)
    for step in range(1, k):
        mass = nearest * weights
        mass[taken] = 0.0
        total = mass.sum()
        # All remaining candidates sit on chosen ones (duplicates): fall back to uncertainty order.
        pick = int(rng.choice(n, p=mass / total)) if total > 0 else int(np.argmax(np.where(taken, -np.inf, weights)))
        chosen[step], taken[pick] = pick, True
        nearest = np.minimum(nearest, _sq_distances_to_row(X, norms, pick))
    return chosen


# Wide sparse features (TF-IDF) are projected before k-means: its centres are dense (k x d).
SVD_ABOVE = 256
SVD_COMPONENTS = 64
MAX_ITER = 50


def _kmeans(X: Features, weights: NDArray[np.float64], k: int, rng: np.random.Generator) -> NDArray[np.intp]:
    if sp.issparse(X) and X.shape[1] > SVD_ABOVE:
        components = min(SVD_COMPONENTS, X.shape[1] - 1, X.shape[0] - 1)
        X = TruncatedSVD(components, random_state=int(rng.integers(2**31 - 1))).fit_transform(X)
    if sp.issparse(X):
        X = X.toarray()
    # Our own weighted seeding: scikit-learn's k-means++ tries 2 + log(k) seeds per step, the bulk
    # of the cost for large batches, and the seeds here only start Lloyd's iterations.
    seeds = _kmeanspp(X, weights, k, rng)
    km = KMeans(n_clusters=k, init=X[seeds], n_init=1, max_iter=MAX_ITER)
    with warnings.catch_warnings():
        # Duplicate rows give fewer distinct clusters than k; the top-up below handles that.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = km.fit_predict(X, sample_weight=weights)
    centres = km.cluster_centers_[labels]
    to_centre = np.einsum("ij,ij->i", X - centres, X - centres)
    # One pick per non-empty cluster: its member nearest the centre.
    order = np.lexsort((to_centre, labels))
    first_of_cluster = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    chosen = list(order[first_of_cluster])
    if len(chosen) < k:
        # Duplicate rows can leave clusters empty: top up by uncertainty.
        rest = np.setdiff1d(np.arange(X.shape[0]), chosen)
        chosen.extend(rest[np.argsort(-weights[rest], kind="stable")][: k - len(chosen)])
    picked = np.asarray(chosen, dtype=np.intp)
    return picked[np.argsort(-weights[picked], kind="stable")]


def select_batch(
    features: Features,
    uncertainty: NDArray[np.float64],
    batch_size: int,
    *,
    method: Method = "kmeans",
    candidate_factor: float = 10.0,
    uncertainty_power: float = 1.0,
    labeled_features: Features | None = None,
    exclude: NDArray[np.bool_] | None = None,
    rng: np.random.Generator | None = None,
) -> Batch:
    """Choose ``batch_size`` rows of the pool: the ``candidate_factor * batch_size`` most uncertain rows
    (excluding rows where ``exclude`` is True), then ``method`` among them.

    ``features`` (n, d) dense or sparse, ``uncertainty`` (n,). ``labeled_features`` (rows already
    labeled, same space) seeds ``kcenter`` so that the batch also avoids what is already known.
    ``uncertainty_power`` trades diversity (0: pure spread among the candidates) against uncertainty.
    ``rng`` drives ``kmeans``/``kmeanspp``: pass a seeded Generator for a reproducible batch.
    Cost: O(n) on the pool plus O(M * batch_size * d) on the M candidates.
    """
    u = np.clip(np.asarray(uncertainty, dtype=np.float64), 0.0, 1.0)
    n = len(u)
    if features.shape[0] != n:
        raise ValueError(f"features has {features.shape[0]} rows, uncertainty {n}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    rng = rng or np.random.default_rng()
    k_wanted = max(0, int(batch_size))
    m = max(k_wanted, int(np.ceil(candidate_factor * k_wanted)))
    candidates = top_candidates(u, m, exclude=exclude)
    k = min(k_wanted, len(candidates))
    if k == 0:
        return _batch(np.empty(0, dtype=np.intp), u)
    if method == "top" or k == len(candidates):
        return _batch(candidates[:k], u)
    X = _rows(features, candidates)
    # Zero weights would make the most uncertain candidates unpickable ties; a floor keeps order.
    weights = np.maximum(u[candidates], 1e-6) ** uncertainty_power
    if method == "kcenter":
        labeled = None if labeled_features is None else _dense_or_csr(labeled_features)
        local = _kcenter(X, weights, k, labeled)
    elif method == "kmeanspp":
        local = _kmeanspp(X, weights, k, rng)
    else:
        local = _kmeans(X, weights, k, rng)
    return _batch(candidates[local], u)


def _batch(indices: NDArray[np.intp], u: NDArray[np.float64]) -> Batch:
    k = len(indices)
    # 1 + (k - rank) / k: strictly decreasing, in (1, 2], so every chosen row sorts above any uncertainty.
    priorities = 1.0 + (k - np.arange(k, dtype=np.float64)) / max(k, 1)
    return Batch(indices=indices.astype(np.intp), priorities=priorities, uncertainty=u[indices].copy())


def queue_priorities(uncertainty: NDArray[np.float64], batch: Batch) -> NDArray[np.float64]:
    """One priority per pool row: the batch's rows get its priorities (in (1, 2], in hand-out order),
    every other row its uncertainty clipped to [0, 1], so a queue ordered by priority descending hands
    out the batch first and then the rest by uncertainty."""
    out = np.clip(np.asarray(uncertainty, dtype=np.float64), 0.0, 1.0).copy()
    out[batch.indices] = batch.priorities
    return out


def gradient_embedding(features: Features, probabilities: NDArray[np.float64]) -> Features:
    """BADGE's embedding for a linear softmax model: (p - onehot(argmax p)) ⊗ x, the gradient of the
    loss at the predicted label with respect to the last layer. Its norm grows with uncertainty and its
    direction with both the features and the confusion, so k-center or k-means++ on it is diversity
    and uncertainty at once (Ash et al., 2020). (n, k*d); sparse in, sparse out."""
    P = np.asarray(probabilities, dtype=np.float64)
    residual = P.copy()
    residual[np.arange(len(P)), P.argmax(axis=1)] -= 1.0
    X = _dense_or_csr(features)
    if sp.issparse(X):
        blocks: list[Any] = [sp.diags(residual[:, c]) @ X for c in range(P.shape[1])]
        return sp.hstack(blocks, format="csr")
    return (residual[:, :, None] * X[:, None, :]).reshape(len(P), -1)
