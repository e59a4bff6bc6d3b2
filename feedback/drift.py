"""Drift between a reference sample (the training set) and a window of production samples. Pure
numpy/scipy/scikit-learn: no ORM, no Django.

Per feature, a two-sample test and an effect size:

- numeric: Kolmogorov-Smirnov (statistic D, p-value) and the Wasserstein distance divided by the
  reference's standard deviation (the pooled one when the reference is constant): "how many standard
  deviations the distribution moved";
- categorical: chi-square test of homogeneity on the 2 x K table of category counts, categories
  too rare for the chi-square approximation (expected count below ``min_expected``) pooled into one,
  and the Jensen-Shannon distance (base 2, in [0, 1]) between the category mixes;
- text: the same chi-square and Jensen-Shannon distance on token counts of a hashed bag of words
  (HashingVectorizer, ``TEXT_BUCKETS`` buckets), the token pattern of ``feedback.pipelines``.

The p-values of one window are corrected together (Holm by default, which bounds the chance of any
false alarm; or Benjamini-Hochberg). A feature is *drifted* only when its corrected p-value is below
``alpha`` AND its effect size exceeds a threshold: with tens of thousands of rows a p-value alone
flags differences far too small to matter. Jensen-Shannon distances are debiased (their expectation
between two samples of one distribution, (K-1)/8 * (1/n_ref + 1/n_win) in nats, is subtracted), because
hashed text has hundreds of buckets and a small window would otherwise look far from any reference.

Multivariate: a domain classifier learns reference (0) against window (1) on the pipeline's
transformed features; its cross-validated AUROC is the window's drift ``score`` (0.5 = no drift,
1 = disjoint) and each window row's out-of-fold probability of "window" its per-sample drift
score (rows from the drifted region score high). The window is drifted by it when the AUROC reaches
``auroc`` and the lower end of its 95% confidence interval (Hanley & McNeil's standard error, no
permutations) is above 0.5.

Main entry points
    ``window_drift(kinds, reference, window, ...) -> WindowDrift``: columns by field name in, the shape
    of ``GET /api/projects/{id}/drift/``'s windows out (``WindowDrift.as_dict()``).
    ``domain_classifier(reference_features, window_features, ...) -> DomainDrift``.
    ``windows_by_count(observed_at, size)`` / ``windows_by_span(observed_at, span)`` -> ``list[Window]``:
    cutting samples, ordered by ``observed_at``, into windows.
    ``columns_of(schema, X)``: the columns of a ``feedback.features.matrix`` by field name.

Cost: a 50,000-row window against a 50,000-row reference with 7 features takes about 3 s on this
2-core machine, most of it the domain classifier (fitted on at most 5,000 rows a side). Its fits are
small: run it with one OpenMP thread (``OMP_NUM_THREADS=1`` or ``threadpoolctl.threadpool_limits(1)``)
on a shared machine, where threads that wait for a busy core made it 20x slower here.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from feedback.features import IMAGE_SIDE, ordered
from feedback.pipelines import TOKEN_PATTERN

Kind = Literal["numeric", "categorical", "text"]
Correction = Literal["holm", "bh", "none"]
TEXT_BUCKETS = 2**10
MISSING = "\x00missing"


@dataclass(frozen=True)
class Thresholds:
    """When a test counts as drift. ``wasserstein`` (in reference standard deviations) and ``js``
    (Jensen-Shannon distance) follow the usual 0.1 convention for data-drift monitors."""

    alpha: float = 0.05
    correction: Correction = "holm"
    wasserstein: float = 0.1
    js: float = 0.1
    auroc: float = 0.6
    min_expected: float = 5.0


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test. ``statistic`` is KS's D or the chi-square statistic; ``effect`` the
    normalized Wasserstein distance or the (debiased) Jensen-Shannon distance."""

    test: str
    statistic: float
    p_value: float | None
    p_adjusted: float | None
    effect_name: str
    effect: float
    drifted: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "drifted": self.drifted,
            "p_adjusted": self.p_adjusted,
            self.effect_name: self.effect,
        }


@dataclass(frozen=True)
class DomainDrift:
    """The domain classifier's verdict. ``sample_scores`` has one out-of-fold probability of "window"
    per window row, in the window's row order."""

    auroc: float
    ci_low: float
    ci_high: float
    drifted: bool
    sample_scores: NDArray[np.float64] = field(repr=False)


@dataclass(frozen=True)
class WindowDrift:
    """A window's drift: ``score`` is the domain classifier's AUROC when it ran, otherwise the largest
    feature effect size; ``drifted`` when any feature or the domain classifier says so."""

    start: Any
    end: Any
    n: int
    drifted: bool
    score: float
    features: dict[str, FeatureDrift]
    domain: DomainDrift | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "n": self.n,
            "drifted": self.drifted,
            "score": self.score,
            "features": {name: f.as_dict() for name, f in self.features.items()},
        }


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="auto"))
    return value


# ---------------------------------------------------------------- numeric


def _finite(values: Any) -> NDArray[np.float64]:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def ks_test(reference: Any, window: Any) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (statistic D, p-value), missing values dropped."""
    result = stats.ks_2samp(_finite(reference), _finite(window))
    return float(result.statistic), float(result.pvalue)


def wasserstein_normalized(reference: Any, window: Any) -> float:
    """Wasserstein-1 distance divided by the reference's standard deviation, so 0.1 means the mass
    moved a tenth of a standard deviation on average. A constant reference is scaled by the pooled
    standard deviation instead (bounded, and 0 only when both are the same constant)."""
    ref, win = _finite(reference), _finite(window)
    distance = float(stats.wasserstein_distance(ref, win))
    scale = float(ref.std())
    if scale == 0.0:
        scale = float(np.concatenate([ref, win]).std())
    return distance / scale if scale > 0 else 0.0


# ---------------------------------------------------------------- counts (categorical, text)


def pool_rare(table: NDArray[np.float64], min_expected: float = 5.0) -> NDArray[np.float64]:
    """Merge the columns of a 2 x K count table whose expected count (under homogeneity) is below
    ``min_expected`` into one column, then keep merging the smallest column into it until every
    column is expected often enough or two columns are left. Empty columns are dropped."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] <= 2:
        return table
    rows = table.sum(axis=1)
    totals = table.sum(axis=0)
    expected_min = totals * rows.min() / rows.sum()
    rare = expected_min < min_expected
    if not rare.any():
        return table
    kept = table[:, ~rare]
    pooled = table[:, rare].sum(axis=1, keepdims=True)
    kept = kept[:, np.argsort(kept.sum(axis=0), kind="stable")]
    while kept.shape[1] > 1 and pooled.sum() * rows.min() / rows.sum() < min_expected:
        pooled = pooled + kept[:, :1]
        kept = kept[:, 1:]
    return np.hstack([kept, pooled])


def chi_square(reference_counts: Any, window_counts: Any, min_expected: float = 5.0) -> tuple[float, float]:
    """Chi-square test of homogeneity (statistic, p-value) on two count vectors over the same
    categories, rare categories pooled; (0, 1) when fewer than two categories are left."""
    table = np.vstack([np.asarray(reference_counts, dtype=np.float64), np.asarray(window_counts, dtype=np.float64)])
    table = pool_rare(table, min_expected)
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def js_distance(reference_counts: Any, window_counts: Any, *, debias: bool = False) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count vectors' proportions.

    ``debias`` subtracts the divergence expected between two samples of one distribution,
    (K-1)/8 * (1/n_ref + 1/n_win) nats for K non-empty categories, before the square root (floored at 0)."""
    p = np.asarray(reference_counts, dtype=np.float64)
    q = np.asarray(window_counts, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    distance = float(jensenshannon(p, q, base=2))
    if not debias:
        return distance
    k = int(((p + q) > 0).sum())
    bias_bits = (k - 1) / 8.0 * (1.0 / p.sum() + 1.0 / q.sum()) / math.log(2)
    return math.sqrt(max(distance**2 - bias_bits, 0.0))


def category_counts(reference: Any, window: Any) -> tuple[NDArray[np.float64], NDArray[np.float64], list[Any]]:
    """Counts of each category (the union of both samples, missing as its own category)."""
    ref = np.array([MISSING if v is None else str(v) for v in reference], dtype=object)
    win = np.array([MISSING if v is None else str(v) for v in window], dtype=object)
    categories, inverse = np.unique(np.concatenate([ref, win]).astype(str), return_inverse=True)
    k = len(categories)
    ref_counts = np.bincount(inverse[: len(ref)], minlength=k).astype(np.float64)
    win_counts = np.bincount(inverse[len(ref) :], minlength=k).astype(np.float64)
    return ref_counts, win_counts, list(categories)


def token_counts(reference: Any, window: Any, buckets: int = TEXT_BUCKETS) -> tuple[NDArray[np.float64], ...]:
    """Token counts per hashed bucket of two text samples (missing text counts as empty)."""
    hasher = HashingVectorizer(
        n_features=buckets, alternate_sign=False, norm=None, token_pattern=TOKEN_PATTERN, lowercase=True
    )
    out = []
    for texts in (reference, window):
        docs = ["" if v is None else str(v) for v in texts]
        matrix = hasher.transform(docs) if docs else sp.csr_matrix((0, buckets))
        out.append(np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel())
    return tuple(out)


# ---------------------------------------------------------------- multiple testing


def adjust_p_values(
    p_values: Sequence[float] | NDArray[np.float64], method: Correction = "holm"
) -> NDArray[np.float64]:
    """Holm's step-down (family-wise error) or Benjamini-Hochberg (false discovery rate) adjusted
    p-values, in the input order, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0 or method == "none":
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    elif method == "bh":
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# ---------------------------------------------------------------- per feature and per window


@dataclass(frozen=True)
class _Raw:
    test: str
    statistic: float
    p_value: float
    effect_name: str
    effect: float


def _feature_test(kind: str, reference: Any, window: Any, thresholds: Thresholds) -> _Raw:
    if kind == "numeric":
        if not len(_finite(reference)) or not len(_finite(window)):
            # Nothing to compare (a field missing on one side): p = 1 leaves the other tests' correction alone.
            return _Raw("ks", 0.0, 1.0, "wasserstein", 0.0)
        statistic, p = ks_test(reference, window)
        return _Raw("ks", statistic, p, "wasserstein", wasserstein_normalized(reference, window))
    if kind == "categorical":
        ref_counts, win_counts, _ = category_counts(reference, window)
        test = "chi2"
    elif kind == "text":
        ref_counts, win_counts = token_counts(reference, window)
        test = "chi2_hashed_tokens"
    else:
        raise ValueError(f"no drift test for kind {kind!r}")
    statistic, p = chi_square(ref_counts, win_counts, thresholds.min_expected)
    return _Raw(test, statistic, p, "jensen_shannon", js_distance(ref_counts, win_counts, debias=True))


def feature_drift(
    kinds: Mapping[str, str],
    reference: Mapping[str, Any],
    window: Mapping[str, Any],
    thresholds: Thresholds = Thresholds(),
) -> dict[str, FeatureDrift]:
    """Every feature of ``kinds`` (field -> "numeric" | "categorical" | "text"; other kinds are
    skipped) tested between the two samples' columns, p-values corrected together."""
    names = [name for name, kind in kinds.items() if kind in ("numeric", "categorical", "text")]
    raws = [_feature_test(kinds[name], reference[name], window[name], thresholds) for name in names]
    adjusted = adjust_p_values([r.p_value for r in raws], thresholds.correction)
    out: dict[str, FeatureDrift] = {}
    for name, raw, p_adj in zip(names, raws, adjusted, strict=True):
        limit = thresholds.wasserstein if raw.effect_name == "wasserstein" else thresholds.js
        out[name] = FeatureDrift(
            test=raw.test,
            statistic=raw.statistic,
            p_value=raw.p_value,
            p_adjusted=float(p_adj),
            effect_name=raw.effect_name,
            effect=raw.effect,
            drifted=bool(p_adj < thresholds.alpha and raw.effect > limit),
        )
    return out


DENSE_UP_TO = 256


def _dense(matrix: Any) -> NDArray[np.float64]:
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float64)


def auroc_interval(auroc: float, n_reference: int, n_window: int, z: float = 1.96) -> tuple[float, float]:
    """Confidence interval of an AUROC by Hanley & McNeil's (1982) standard error: no permutations."""
    a = min(max(auroc, 1e-9), 1 - 1e-9)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (n_window - 1) * (q1 - a * a) + (n_reference - 1) * (q2 - a * a)) / (
        n_reference * n_window
    )
    half = z * math.sqrt(max(variance, 0.0))
    return max(0.0, auroc - half), min(1.0, auroc + half)


def domain_classifier(
    reference: Any,
    window: Any,
    *,
    thresholds: Thresholds = Thresholds(),
    max_rows: int = 5000,
    folds: int = 5,
    seed: int = 0,
) -> DomainDrift:
    """Reference (0) against window (1) on transformed features (dense or sparse, same columns).

    Each side is subsampled to at most ``max_rows`` rows for fitting (the AUROC's error is already
    ~0.01 there); the AUROC is that of the out-of-fold probabilities of the subsample. Up to
    ``DENSE_UP_TO`` columns the features go dense to a HistGradientBoostingClassifier (it sees shifts
    of spread and interactions, not only of the mean); wider sparse ones (TF-IDF) to a LogisticRegression.
    Window rows left out of the subsample are scored by the mean of the fold models, which never saw
    them, so every window row gets an out-of-sample score.
    """
    rng = np.random.default_rng(seed)
    n_ref, n_win = reference.shape[0], window.shape[0]
    if n_ref < folds or n_win < folds:
        return DomainDrift(auroc=0.5, ci_low=0.0, ci_high=1.0, drifted=False, sample_scores=np.full(n_win, 0.5))
    ref_fit = np.sort(rng.choice(n_ref, min(n_ref, max_rows), replace=False))
    win_fit = np.sort(rng.choice(n_win, min(n_win, max_rows), replace=False))
    if reference.shape[1] <= DENSE_UP_TO:
        # Narrow sparse input (one-hot categories beside numbers) is densified so that gradient
        # boosting, which also sees changes of spread, can take it; wide TF-IDF stays sparse.
        reference, window = _dense(reference), _dense(window)
    sparse = sp.issparse(reference) or sp.issparse(window)
    if sparse:
        X = sp.csr_matrix(sp.vstack([sp.csr_matrix(reference[ref_fit]), sp.csr_matrix(window[win_fit])]))
        window = sp.csr_matrix(window)
    else:
        X = np.vstack([reference[ref_fit], window[win_fit]])
    y = np.r_[np.zeros(len(ref_fit)), np.ones(len(win_fit))]
    rest = np.setdiff1d(np.arange(n_win), win_fit)
    rest_scores = np.zeros(len(rest))
    oof = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        model: Any = (
            LogisticRegression(max_iter=1000)
            if sparse
            else HistGradientBoostingClassifier(max_iter=50, max_leaf_nodes=15, early_stopping=False, random_state=seed)
        )
        model.fit(X[train], y[train])
        oof[test] = model.predict_proba(X[test])[:, 1]
        if len(rest):
            rest_scores += model.predict_proba(window[rest])[:, 1] / folds
    auroc = float(roc_auc_score(y, oof))
    low, high = auroc_interval(auroc, len(ref_fit), len(win_fit))
    scores = np.empty(n_win)
    scores[win_fit] = oof[len(ref_fit) :]
    scores[rest] = rest_scores
    return DomainDrift(
        auroc=auroc,
        ci_low=low,
        ci_high=high,
        drifted=bool(auroc >= thresholds.auroc and low > 0.5),
        sample_scores=scores,
    )


def window_drift(
    kinds: Mapping[str, str],
    reference: Mapping[str, Any],
    window: Mapping[str, Any],
    *,
    reference_features: Any = None,
    window_features: Any = None,
    thresholds: Thresholds = Thresholds(),
    start: Any = None,
    end: Any = None,
    seed: int = 0,
) -> WindowDrift:
    """Per-feature tests on the columns (``reference``/``window``: field -> values), plus the domain
    classifier when both transformed feature matrices are given. ``start``/``end`` are carried
    through (datetimes become ISO strings in ``as_dict``)."""
    features = feature_drift(kinds, reference, window, thresholds)
    n = window_features.shape[0] if window_features is not None else len(next(iter(window.values()), []))
    domain = None
    if reference_features is not None and window_features is not None:
        domain = domain_classifier(reference_features, window_features, thresholds=thresholds, seed=seed)
    drifted = any(f.drifted for f in features.values()) or (domain is not None and domain.drifted)
    score = domain.auroc if domain is not None else max((f.effect for f in features.values()), default=0.0)
    return WindowDrift(start=start, end=end, n=n, drifted=drifted, score=score, features=features, domain=domain)


def columns_of(schema: Mapping[str, str], X: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """The columns of a ``feedback.features.matrix`` by schema field; image fields are left out
    (their pixels reach drift through the domain classifier)."""
    out: dict[str, NDArray[Any]] = {}
    position = 0
    for name, kind in ordered(dict(schema)):
        if kind == "image":
            position += IMAGE_SIDE * IMAGE_SIDE
            continue
        column = X[:, position]
        out[name] = column.astype(np.float64) if kind == "numeric" else column
        position += 1
    return out


# ---------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    """Samples of one window: ``indices`` into the input, in ``observed_at`` order; ``start``/``end``
    the first and last ``observed_at`` in it (the input's own values)."""

    indices: NDArray[np.intp]
    start: Any
    end: Any

    @property
    def n(self) -> int:
        return len(self.indices)


def _nanoseconds(observed_at: Sequence[Any] | NDArray[Any]) -> NDArray[np.int64]:
    values = np.asarray(observed_at)
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]").astype(np.int64)
    # Aware datetimes (or naive ones, taken as they are): one conversion per row, to an int timeline.
    return np.array([round(v.timestamp() * 1e6) * 1000 for v in observed_at], dtype=np.int64)


def windows_by_count(observed_at: Sequence[Any] | NDArray[Any], size: int) -> list[Window]:
    """Consecutive windows of ``size`` samples in ``observed_at`` order (ties keep input order); the
    last window holds the remainder and may be smaller."""
    if size < 1:
        raise ValueError("window size must be at least 1")
    order = np.argsort(_nanoseconds(observed_at), kind="stable").astype(np.intp)
    return [_window(order[i : i + size], observed_at) for i in range(0, len(order), size)]


def windows_by_span(
    observed_at: Sequence[Any] | NDArray[Any], span: timedelta | np.timedelta64, origin: Any = None
) -> list[Window]:
    """Windows of ``span`` of time each, [origin + i*span, origin + (i+1)*span), from ``origin``
    (default: the earliest ``observed_at``); empty spans are left out."""
    t = _nanoseconds(observed_at)
    if len(t) == 0:
        return []
    step = int(np.timedelta64(span, "ns").astype(np.int64))
    if step <= 0:
        raise ValueError("window span must be positive")
    zero = int(_nanoseconds([origin])[0]) if origin is not None else int(t.min())
    order = np.argsort(t, kind="stable").astype(np.intp)
    bins = (t[order] - zero) // step
    cuts = np.flatnonzero(np.diff(bins)) + 1
    return [_window(part, observed_at) for part in np.split(order, cuts) if len(part)]


def _window(indices: NDArray[np.intp], observed_at: Sequence[Any] | NDArray[Any]) -> Window:
    return Window(indices=indices, start=observed_at[int(indices[0])], end=observed_at[int(indices[-1])])
