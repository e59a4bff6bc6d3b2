"""Benchmark: label quality. Consensus on simulated crowds, and finding flipped labels.

A benchmark, not a test: it prints figures beside their anchors and asserts nothing. Two parts:

1. consensus: 10 simulated annotators whose chance of giving the true label is 0.95, 0.9, 0.85,
   0.8, 0.7, 0.6, 0.45, 0.35, 0.3, 0.3 (a wrong answer is uniform over the other labels); 4 classes,
   2,000 items, 3 answers per item from distinct random annotators. Accuracy against the truth of
   majority vote, of ``labeling.consensus.dawid_skene`` (defaults, and with ``shrinkage=20``) and of
   crowd-kit's ``DawidSkene(n_iter=100)`` on the same answers, per seed and their mean; beside them
   the ceiling, decided with the simulation's true confusion matrices.
2. errors: scikit-learn's digits and breast_cancer with 10% of the labels flipped to another class
   at random; out-of-fold probabilities from StandardScaler + LogisticRegression(max_iter=1000) and
   5-fold ``cross_val_predict`` (stratified, unshuffled, like ``cv=5``); precision, recall and F1 of
   ``feedback.label_issues.find_label_issues`` and of cleanlab's ``filter.find_label_issues`` on
   those same probabilities, per seed and their mean.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/quality.py [--seeds 3] [--part all|consensus|errors] [--shuffle]

``--shuffle`` shuffles the folds (``StratifiedKFold(shuffle=True)``); the anchors were measured
without. Anchors are the issue's, measured with crowd-kit 1.4.2 and cleanlab 2.9.0.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues as cleanlab_find_label_issues
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from numpy.typing import NDArray
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedback.label_issues import find_label_issues, out_of_fold_probabilities
from labeling.consensus import dawid_skene, majority_votes

ACCURACIES = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.45, 0.35, 0.3, 0.3])
N_ITEMS, N_LABELS, PER_ITEM = 2000, 4, 3
CONSENSUS_ANCHORS = {"majority vote": 0.745, "crowd-kit DawidSkene": 0.843}
# (precision, recall) of cleanlab 2.9.0's find_label_issues, from the issue.
ERROR_ANCHORS = {"digits": (0.58, 0.88), "breast_cancer": (0.85, 0.83)}
FLIP_RATE = 0.10


def simulate_crowd(seed: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, N_LABELS, N_ITEMS)
    annotators = np.argsort(rng.random((N_ITEMS, ACCURACIES.size)), axis=1)[:, :PER_ITEM].ravel()
    items = np.repeat(np.arange(N_ITEMS), PER_ITEM)
    right = rng.random(items.size) < ACCURACIES[annotators]
    wrong = (truth[items] + rng.integers(1, N_LABELS, items.size)) % N_LABELS
    # Shuffled so that majority vote's "first answered" tie-break is a random one, as in a real queue.
    order = rng.permutation(items.size)
    return truth, items[order], annotators[order], np.where(right, truth[items], wrong)[order]


def crowd_kit_labels(items: NDArray[np.intp], annotators: NDArray[np.intp], labels: NDArray[np.intp]) -> NDArray[Any]:
    frame = pd.DataFrame({"task": items, "worker": annotators, "label": labels})
    predicted = CrowdKitDawidSkene(n_iter=100).fit_predict(frame)
    return np.asarray(predicted.sort_index().reindex(range(N_ITEMS)).to_numpy())


METHODS = [
    "majority vote",
    "labelloop dawid_skene",
    "labelloop dawid_skene shrinkage=20",
    "crowd-kit DawidSkene",
    "ceiling: true confusion matrices",
]


def ceiling_labels(items: NDArray[np.intp], annotators: NDArray[np.intp], labels: NDArray[np.intp]) -> NDArray[Any]:
    """The Bayes decision with the simulation's own confusion matrices: what no estimator can beat."""
    eye = np.eye(N_LABELS)
    accuracy = ACCURACIES[:, None, None]
    log_confusion = np.log(accuracy * eye + (1 - accuracy) / (N_LABELS - 1) * (1 - eye))
    evidence = np.zeros((N_ITEMS, N_LABELS))
    np.add.at(evidence, items, log_confusion[annotators, :, labels])
    return evidence.argmax(axis=1)


def consensus_labels(
    method: str, items: NDArray[np.intp], annotators: NDArray[np.intp], labels: NDArray[np.intp]
) -> NDArray[Any]:
    common = {"n_items": N_ITEMS, "n_annotators": ACCURACIES.size, "n_labels": N_LABELS}
    if method == "majority vote":
        return majority_votes(items, labels, n_items=N_ITEMS, n_labels=N_LABELS).labels
    if method == "labelloop dawid_skene":
        return dawid_skene(items, annotators, labels, **common).labels
    if method == "labelloop dawid_skene shrinkage=20":
        return dawid_skene(items, annotators, labels, shrinkage=20.0, **common).labels
    if method == "crowd-kit DawidSkene":
        return crowd_kit_labels(items, annotators, labels)
    return ceiling_labels(items, annotators, labels)


def bench_consensus(seeds: int) -> None:
    print(f"## consensus: {N_ITEMS} items x {PER_ITEM} answers, {N_LABELS} classes, annotators {ACCURACIES.tolist()}")
    scores: dict[str, list[float]] = {m: [] for m in METHODS}
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in range(seeds):
        truth, items, annotators, labels = simulate_crowd(seed)
        for method in METHODS:
            start = time.perf_counter()
            predicted = consensus_labels(method, items, annotators, labels)
            times[method].append(time.perf_counter() - start)
            scores[method].append(float((predicted == truth).mean()))
    print(f"{'method':38} " + " ".join(f"seed {s:<3}" for s in range(seeds)) + "   mean  anchor   time/run")
    for method in METHODS:
        anchor = CONSENSUS_ANCHORS.get(method)
        anchor_text = f"{anchor:.3f}" if anchor is not None else "   - "
        per_seed = " ".join(f"{v:8.4f}" for v in scores[method])
        mean_ms = np.mean(times[method]) * 1000
        print(f"{method:38} {per_seed} {np.mean(scores[method]):7.4f}  {anchor_text}  {mean_ms:7.1f} ms")
    print()


def make_model() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def flip_labels(y: NDArray[np.intp], seed: int) -> NDArray[np.intp]:
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    flipped = rng.choice(y.size, size=round(FLIP_RATE * y.size), replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, flipped.size)) % n_classes
    return noisy


def precision_recall_f1(flagged: NDArray[np.bool_], truth: NDArray[np.bool_]) -> tuple[float, float, float]:
    hits = float((flagged & truth).sum())
    precision = hits / max(int(flagged.sum()), 1)
    recall = hits / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def bench_errors(seeds: int, shuffle: bool) -> None:
    folds = "shuffled" if shuffle else "unshuffled"
    print(f"## label errors: {FLIP_RATE:.0%} of labels flipped, 5-fold {folds} out-of-fold probabilities")
    header = f"{'dataset':14} {'finder':18} {'precision':>9} {'recall':>7} {'F1':>6} {'flagged':>8} {'flipped':>8}"
    print(f"{header}   per-seed F1")
    for name, loader in [("digits", load_digits), ("breast_cancer", load_breast_cancer)]:
        X, y = loader(return_X_y=True)
        results: dict[str, list[tuple[float, float, float, int]]] = {"labelloop": [], "cleanlab": []}
        n_flipped = 0
        for seed in range(seeds):
            noisy = flip_labels(y.astype(np.intp), seed)
            truth = noisy != y
            n_flipped = int(truth.sum())
            probabilities = out_of_fold_probabilities(make_model, X, noisy, n_splits=5, shuffle=shuffle, seed=seed)
            ours = np.zeros(y.size, dtype=bool)
            ours[find_label_issues(probabilities, noisy).indices] = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = np.asarray(cleanlab_find_label_issues(noisy, probabilities), dtype=bool)
            for finder, flagged in [("labelloop", ours), ("cleanlab", theirs)]:
                results[finder].append((*precision_recall_f1(flagged, truth), int(flagged.sum())))
        for finder, rows in results.items():
            p, r, f, flagged_count = np.mean(np.array(rows), axis=0)
            per_seed = " ".join(f"{row[2]:.3f}" for row in rows)
            print(f"{name:14} {finder:18} {p:9.3f} {r:7.3f} {f:6.3f} {flagged_count:8.1f} {n_flipped:8d}   {per_seed}")
        ap, ar = ERROR_ANCHORS[name]
        print(f"{name:14} {'anchor (cleanlab)':18} {ap:9.3f} {ar:7.3f} {2 * ap * ar / (ap + ar):6.3f}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--part", choices=["all", "consensus", "errors"], default="all")
    parser.add_argument("--shuffle", action="store_true", help="shuffle the cross-validation folds")
    args = parser.parse_args()
    if args.part in ("all", "consensus"):
        bench_consensus(args.seeds)
    if args.part in ("all", "errors"):
        bench_errors(args.seeds, args.shuffle)


if __name__ == "__main__":
    main()
