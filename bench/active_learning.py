"""Benchmark: Labelloop's selection strategies against modAL's margin sampling and random.

A benchmark, not a test: it prints figures beside their anchors and asserts nothing.

Protocol (issue 3), per dataset and seed: a 70/30 stratified split; the model is StandardScaler +
LogisticRegression refit on the labeled rows; start from 10 random labels of the pool, then batches
of 10 chosen by the strategy, up to 300 labels (or the whole pool). "Labels" is the number of labels
at the first point of the learning curve whose test accuracy reaches 95% of the accuracy of the same
model trained on the whole pool (the budget when never reached); AULC is the area under the learning
curve (test accuracy against labels), divided by the range of labels. Both are means over seeds.

modAL 0.4.2.1 (its last release) runs for real through its ActiveLearner; its learners still pass
``force_all_finite`` to scikit-learn's ``check_X_y``, which scikit-learn 1.8 removed, hence the
one-line shim below. Datasets ship offline: scikit-learn's digits, breast_cancer and wine, river's
Phishing.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/active_learning.py [--seeds 10] [--datasets digits,wine] [--strategies margin,diverse]
    .venv/bin/python bench/active_learning.py --scale    # batch selection on a 1,000,000-row pool
"""

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedback import diversity, uncertainty  # noqa: E402

INITIAL = 10
BATCH = 10
BUDGET = 300
TARGET = 0.95

# Figures measured by issue 3 with modAL 0.4.2.1 on this protocol: (labels, AULC).
ANCHORS: dict[str, dict[str, tuple[int, float]]] = {
    "digits": {"random": (168, 0.871), "modal_margin": (108, 0.899)},
    "breast_cancer": {"random": (20, 0.960), "modal_margin": (16, 0.966)},
    "wine": {"random": (38, 0.970), "modal_margin": (26, 0.980)},
    "phishing": {"random": (34, 0.882), "modal_margin": (20, 0.894)},
}


def load(name: str) -> tuple[NDArray[np.float64], NDArray[Any]]:
    if name == "digits":
        X, y = load_digits(return_X_y=True)
    elif name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
    elif name == "wine":
        X, y = load_wine(return_X_y=True)
    elif name == "phishing":
        from river.datasets import Phishing

        rows = list(Phishing())
        keys = list(rows[0][0])
        X = np.array([[float(x[key]) for key in keys] for x, _ in rows])
        y = np.array([int(label) for _, label in rows])
    else:
        raise SystemExit(f"unknown dataset {name}")
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def new_model(seed: int) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


@dataclass
class State:
    """What a strategy may look at: the model fitted on the labeled rows, the pool, who is labeled."""

    model: Pipeline
    X_pool: NDArray[np.float64]
    labeled: NDArray[np.bool_]
    rng: np.random.Generator


Strategy = Callable[[State, int], NDArray[np.intp]]


def _probabilities(state: State) -> NDArray[np.float64]:
    return np.asarray(state.model.predict_proba(state.X_pool), dtype=np.float64)


def by_score(name: str) -> Strategy:
    def choose(state: State, k: int) -> NDArray[np.intp]:
        scores = uncertainty.score(name, _probabilities(state), rng=state.rng)
        return diversity.top_candidates(scores, k, exclude=state.labeled)

    return choose


def diverse(
    method: diversity.Method,
    *,
    measure: str = "margin",
    factor: float = 10.0,
    power: float = 1.0,
    seed_labeled: bool = False,
    embedding: str = "features",
) -> Strategy:
    def choose(state: State, k: int) -> NDArray[np.intp]:
        P = _probabilities(state)
        scores = uncertainty.score(measure, P)
        # The space the model sees: the pipeline's preprocessor applied to the pool.
        X = state.model[:-1].transform(state.X_pool)
        if embedding == "badge":
            X = diversity.gradient_embedding(X, P)
        batch = diversity.select_batch(
            X,
            scores,
            k,
            method=method,
            candidate_factor=factor,
            uncertainty_power=power,
            labeled_features=X[state.labeled] if seed_labeled else None,
            exclude=state.labeled,
            rng=state.rng,
        )
        return batch.indices

    return choose


def modal_learner() -> tuple[Any, Any]:
    """modAL's ActiveLearner and margin_sampling, with the shim that lets it run on scikit-learn >= 1.8."""
    import modAL.models.learners as learners
    from sklearn.utils import check_X_y

    # The one-line shim: modAL passes force_all_finite, which scikit-learn renamed ensure_all_finite.
    learners.check_X_y = lambda *a, force_all_finite=True, **kw: check_X_y(*a, ensure_all_finite=force_all_finite, **kw)
    from modAL.models import ActiveLearner
    from modAL.uncertainty import margin_sampling

    return ActiveLearner, margin_sampling


def modal_run(
    X_pool: NDArray[np.float64],
    y_pool: NDArray[Any],
    initial: NDArray[np.intp],
    X_test: NDArray[np.float64],
    y_test: NDArray[Any],
    budget: int,
    seed: int,
) -> tuple[list[int], list[float]]:
    """modAL's own loop: the learner keeps its training set, we keep its pool (rows leave as taught)."""
    learner_class, query = modal_learner()
    learner = learner_class(
        estimator=new_model(seed), query_strategy=query, X_training=X_pool[initial], y_training=y_pool[initial]
    )
    rest = np.setdiff1d(np.arange(len(X_pool)), initial)
    X_rest, y_rest = X_pool[rest], y_pool[rest]
    counts, accuracies = [len(initial)], [float(learner.score(X_test, y_test))]
    while counts[-1] < budget and len(X_rest):
        k = min(BATCH, budget - counts[-1], len(X_rest))
        index, _ = learner.query(X_rest, n_instances=k)
        learner.teach(X_rest[index], y_rest[index])
        X_rest, y_rest = np.delete(X_rest, index, axis=0), np.delete(y_rest, index)
        counts.append(counts[-1] + k)
        accuracies.append(float(learner.score(X_test, y_test)))
    return counts, accuracies


def labelloop_run(
    strategy: Strategy,
    X_pool: NDArray[np.float64],
    y_pool: NDArray[Any],
    initial: NDArray[np.intp],
    X_test: NDArray[np.float64],
    y_test: NDArray[Any],
    budget: int,
    seed: int,
) -> tuple[list[int], list[float]]:
    labeled = np.zeros(len(X_pool), dtype=bool)
    labeled[initial] = True
    rng = np.random.default_rng(seed + 1000)
    counts: list[int] = []
    accuracies: list[float] = []
    while True:
        model = new_model(seed).fit(X_pool[labeled], y_pool[labeled])
        counts.append(int(labeled.sum()))
        accuracies.append(float(model.score(X_test, y_test)))
        if counts[-1] >= budget or labeled.all():
            return counts, accuracies
        k = min(BATCH, budget - counts[-1], int((~labeled).sum()))
        chosen = strategy(State(model=model, X_pool=X_pool, labeled=labeled, rng=rng), k)
        assert len(chosen) == k and not labeled[chosen].any(), "a strategy must choose k unlabeled rows"
        labeled[chosen] = True


def parse(name: str) -> Strategy:
    """``random``, a measure (``margin``, ``least_confidence``, ``entropy``), or a batch-aware spec
    ``<method>[_f<factor>][_p<power>][_seeded][_badge][_m<measure>]``, e.g. ``kmeans_f10_p1``."""
    if name == "diverse":
        name = DEFAULT
    if name in ("random", *uncertainty.MEASURES):
        return by_score(name)
    method, *options = name.split("_")
    if method not in diversity.METHODS:
        raise SystemExit(f"unknown strategy {name}")
    kwargs: dict[str, Any] = {}
    for option in options:
        if option == "seeded":
            kwargs["seed_labeled"] = True
        elif option == "badge":
            kwargs["embedding"] = "badge"
        elif option.startswith("f"):
            kwargs["factor"] = float(option[1:])
        elif option.startswith("p"):
            kwargs["power"] = float(option[1:])
        elif option.startswith("m"):
            kwargs["measure"] = {"lc": "least_confidence"}.get(option[1:], option[1:])
        else:
            raise SystemExit(f"unknown option {option} in {name}")
    return diverse(method, **kwargs)


# The default (batch-aware) strategy, chosen by this benchmark: uncertainty-weighted k-means over the
# 10 x batch most uncertain rows by margin (see bench/README.md for the figures that chose it).
DEFAULT = "kmeans_f10"
DEFAULT_STRATEGIES = [
    "modal_margin",
    "random",
    "margin",
    "least_confidence",
    "entropy",
    DEFAULT,
    "kmeans_f20",
    "kmeans_f10_p0",
    "kcenter_f10",
    "kcenter_f10_seeded",
    "kmeanspp_f10",
    "kmeans_f10_badge",
]


def initial_labels(y_pool: NDArray[Any], seed: int) -> NDArray[np.intp]:
    """10 random pool rows; redrawn (from the same stream) while they hold a single class, which
    LogisticRegression cannot fit. Seeds 0-4 keep their first draw, so the anchors' runs are unchanged."""
    rng = np.random.default_rng(seed)
    while True:
        initial = rng.choice(len(y_pool), INITIAL, replace=False)
        if len(np.unique(y_pool[initial])) > 1:
            return initial


def labels_to_reach(counts: list[int], accuracies: list[float], target: float) -> int:
    for n, acc in zip(counts, accuracies, strict=True):
        if acc >= target:
            return n
    return counts[-1]


def aulc(counts: list[int], accuracies: list[float]) -> float:
    span = counts[-1] - counts[0]
    return float(np.trapezoid(accuracies, counts) / span) if span else accuracies[0]


@dataclass
class Result:
    reach: list[int]
    areas: list[float]
    seconds: float = 0.0


def report(name: str, n_rows: int, n_features: int, seeds: int, results: dict[str, Result]) -> None:
    first = min(5, seeds)
    print(f"\n{name}: {n_rows} rows, {n_features} features; mean over seeds 0-{first - 1} and over all {seeds} seeds")
    header = f"{'strategy':<22} {'labels@5':>8} {'AULC@5':>7} {'labels':>7} {'AULC':>7} {'s/seed':>7}"
    print(f"{header}   anchor (labels / AULC)")
    for strategy, r in results.items():
        anchor = ANCHORS.get(name, {}).get(strategy)
        note = f"{anchor[0]} / {anchor[1]:.3f}" if anchor else ""
        label = f"{strategy} (default)" if strategy == DEFAULT else strategy
        print(
            f"{label:<22} {np.mean(r.reach[:first]):>8.1f} {np.mean(r.areas[:first]):>7.3f} {np.mean(r.reach):>7.1f}"
            f" {np.mean(r.areas):>7.3f} {r.seconds / seeds:>7.2f}   {note}"
        )
    if DEFAULT in results:
        d = results[DEFAULT]
        lines = []
        if "random" in results:
            rnd = results["random"]
            worse = np.mean(d.reach) > np.mean(rnd.reach) or np.mean(d.areas) < np.mean(rnd.areas)
            lines.append(f"never worse than random: {'no' if worse else 'yes'}")
        if name == "digits" and "modal_margin" in ANCHORS[name]:
            labels, area = ANCHORS[name]["modal_margin"]
            beats = np.mean(d.reach) < labels and np.mean(d.areas) > area
            lines.append(f"beats modAL margin's anchor ({labels} / {area}): {'yes' if beats else 'no'}")
        print(f"goal for {DEFAULT}: " + "; ".join(lines))


def scale(rows: int = 1_000_000, width: int = 64) -> None:
    """Time select_batch + queue_priorities on a pool of ``rows`` x ``width`` features (dense), and
    on sparse TF-IDF-like rows (50,000 columns, 20 non-zeros each)."""
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((rows, width))
    u = rng.random(rows)
    nnz = 20
    sparse = sp.csr_matrix(
        (rng.random(rows * nnz), rng.integers(0, 50_000, rows * nnz), np.arange(0, rows * nnz + 1, nnz)),
        shape=(rows, 50_000),
    )
    print(f"\nselect_batch on {rows:,} rows (candidates = 10 x batch), then queue_priorities over the pool")
    print(f"{'features':<22} {'method':<9} {'batch':>6} {'seconds':>8}")
    for label, X in ((f"dense {width}", pool), ("sparse 50,000", sparse)):
        for method in ("kmeans", "kcenter"):
            for k in (10, 100, 1000):
                t0 = time.perf_counter()
                batch = diversity.select_batch(X, u, k, method=method, rng=rng)
                diversity.queue_priorities(u, batch)
                print(f"{label:<22} {method:<9} {k:>6} {time.perf_counter() - t0:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--datasets", default="digits,breast_cancer,wine,phishing")
    parser.add_argument("--strategies", default="", help="comma-separated, see parse() (default: a standard set)")
    parser.add_argument("--scale", action="store_true", help="only time batch selection on a 1,000,000-row pool")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    # One BLAS/OpenMP thread: the fits are tiny, and two threads on a shared 2-core machine spin-wait.
    threadpool_limits(1)
    if args.scale:
        scale()
        return
    wanted = [s for s in args.strategies.split(",") if s] or DEFAULT_STRATEGIES
    known = {s: parse(s) for s in wanted if s != "modal_margin"}
    for name in args.datasets.split(","):
        X, y = load(name)
        results = {s: Result([], []) for s in wanted}
        for seed in range(args.seeds):
            X_pool, X_test, y_pool, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
            full = float(new_model(seed).fit(X_pool, y_pool).score(X_test, y_test))
            budget = min(BUDGET, len(X_pool))
            initial = initial_labels(y_pool, seed)
            for strategy in wanted:
                t0 = time.perf_counter()
                if strategy == "modal_margin":
                    counts, accs = modal_run(X_pool, y_pool, initial, X_test, y_test, budget, seed)
                else:
                    counts, accs = labelloop_run(known[strategy], X_pool, y_pool, initial, X_test, y_test, budget, seed)
                r = results[strategy]
                r.reach.append(labels_to_reach(counts, accs, TARGET * full))
                r.areas.append(aulc(counts, accs))
                r.seconds += time.perf_counter() - t0
        report(name, len(X), X.shape[1], args.seeds, results)


if __name__ == "__main__":
    main()
