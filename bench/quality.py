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

3. wired (PostgreSQL): the same crowds and flipped labels through the product. Consensus: every
   simulated answer goes through the answer path (``labeling.queue.annotation_submit``, which calls
   ``task_finalize`` with the project's method: majority, or Dawid-Skene's posterior under the
   stored estimate), then ``consensus_reestimate`` (the Celery task's service); the final labels
   are read back from the database. Label errors: the noisy digits and breast_cancer become a
   project (one numeric field per feature, labels imported), a dataset version is cut, and
   ``feedback.audits.label_issues_find`` (the Celery task's service: the project's own pipeline
   fitted per fold, shuffled 5-fold) stores LabelIssue rows, scored against the flipped ones.
4. audit (PostgreSQL): on a project of ``--answers`` answers (default 200,000: 50 annotators, 3
   answers per sample, 500 gold samples) the audit selector, the worker's refresh that stores its
   figures, ``GET /api/projects/{id}/audit/`` answering from them, the Dawid-Skene re-estimate
   over it, and the answer path's latency under Dawid-Skene.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/quality.py [--seeds 3] [--part all|consensus|errors|wired|audit] [--shuffle]
    .venv/bin/python bench/quality.py --part audit --answers 200000 [--server postgres://postgres@127.0.0.1:5432]

``--shuffle`` shuffles the folds (``StratifiedKFold(shuffle=True)``); the anchors were measured
without. Anchors are the issue's, measured with crowd-kit 1.4.2 and cleanlab 2.9.0. The database
parts make their own database (``labelloop_bench_quality``, dropped first and at the end); ``all``
runs them when the server answers.
"""

import argparse
import os
import statistics
import sys
import tempfile
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


# --- through the product (PostgreSQL) ----------------------------------------------------------

DB_NAME = "labelloop_bench_quality"
# The bench calls the audit services itself: no automatic cut-and-train (and finder) on the way.
QUIET: dict[str, Any] = {"retrain": {"min_new_labels": 10_000_000}}


def _admin(server: str) -> Any:
    import psycopg

    return psycopg.connect(server.rstrip("/") + "/postgres", autocommit=True)


def server_answers(server: str) -> bool:
    try:
        _admin(server).close()
    except Exception:
        return False
    return True


def django_on(server: str) -> None:
    """Create the bench database, point Django at it, migrate."""
    from psycopg import sql

    with _admin(server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    os.environ["DATABASE_URL"] = f"{server.rstrip('/')}/{DB_NAME}"
    os.environ.setdefault("SECRET_KEY", "labelloop-bench-only")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"
    os.environ["LABELLOOP_VAR_DIR"] = tempfile.mkdtemp(prefix="labelloop-bench-quality-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "labelloop.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def django_off(server: str) -> None:
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    with _admin(server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))


def _leased_answer(task_id: int, user: Any, label: str) -> None:
    """An answer through the answer path; the lease is made directly, so that each simulated
    annotator answers exactly the items the simulation gave them (hand-out order is the queue's)."""
    from datetime import timedelta

    from django.utils import timezone

    from labeling import queue
    from labeling.models import Lease, Task

    Lease.objects.create(task_id=task_id, user=user, expires_at=timezone.now() + timedelta(minutes=10))
    Task.objects.filter(pk=task_id).update(n_leased=1)
    queue.annotation_submit(task_id=task_id, user=user, label=label)


def bench_wired_consensus(seeds: int) -> None:
    from django.contrib.auth.models import User
    from django.core.cache import cache

    from labeling.models import Label, Task
    from labeling.services import consensus as consensus_service
    from labeling.services.projects import project_create
    from labeling.services.samples import NewSample, samples_add_bulk

    print("## consensus through the product: every answer via annotation_submit, then consensus_reestimate")
    labels = [f"c{k}" for k in range(N_LABELS)]
    owner = User.objects.create_user("bench-owner")
    people = [User.objects.create_user(f"bench-a{a}") for a in range(ACCURACIES.size)]
    rows: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {}
    for seed in range(seeds):
        truth, items, annotators, answers = simulate_crowd(seed)
        for method in ("majority", "dawid_skene"):
            cache.clear()
            project = project_create(
                creator=owner,
                name=f"crowd {seed} {method}",
                labels=labels,
                schema={"x": "numeric"},
                overlap=PER_ITEM,
                settings={**QUIET, "consensus": {"method": method}},
            )
            added = samples_add_bulk(
                project=project,
                items=[NewSample(external_id=f"i{i}", data={"x": i}) for i in range(N_ITEMS)],
                actor=None,
            )
            sample_ids = np.array(added.sample_ids, dtype=np.int64)
            task_of = dict(Task.objects.filter(project=project).values_list("sample_id", "pk"))
            started = time.perf_counter()
            for j in range(items.size):
                # The first half of the answers, then an estimate, then the rest: the answer path
                # of a project whose estimate lags behind its answers.
                if method == "dawid_skene" and j == items.size // 2:
                    consensus_service.consensus_reestimate(project_id=project.pk)
                _leased_answer(task_of[int(sample_ids[items[j]])], people[annotators[j]], labels[answers[j]])
            per_answer_ms = (time.perf_counter() - started) / items.size * 1000
            final = dict(Label.objects.filter(project=project).values_list("sample_id", "label"))
            predicted = np.array([labels.index(final[int(s)]) if int(s) in final else -1 for s in sample_ids])
            rows.setdefault(f"{method}: answer path", []).append(float((predicted == truth).mean()))
            times.setdefault(f"{method}: answer path", []).append(per_answer_ms)
            if method == "dawid_skene":
                started = time.perf_counter()
                consensus_service.consensus_reestimate(project_id=project.pk)
                took = time.perf_counter() - started
                final = dict(Label.objects.filter(project=project).values_list("sample_id", "label"))
                predicted = np.array([labels.index(final[int(s)]) if int(s) in final else -1 for s in sample_ids])
                rows.setdefault("dawid_skene: after consensus_reestimate", []).append(
                    float((predicted == truth).mean())
                )
                times.setdefault("dawid_skene: after consensus_reestimate", []).append(took * 1000)
    print(f"{'path':42} " + " ".join(f"seed {s:<3}" for s in range(seeds)) + "   mean  anchor   time")
    anchors = {"majority: answer path": 0.745, "dawid_skene: after consensus_reestimate": 0.843}
    for name, values in rows.items():
        unit = "ms/answer" if "answer path" in name else "ms/run"
        anchor = anchors.get(name)
        anchor_text = f"{anchor:.3f}" if anchor is not None else "   - "
        per_seed = " ".join(f"{v:8.4f}" for v in values)
        print(f"{name:42} {per_seed} {np.mean(values):7.4f}  {anchor_text}  {np.mean(times[name]):7.1f} {unit}")
    print("(anchors: majority vote and crowd-kit's DawidSkene, from the issue)")
    print()


def bench_wired_errors(seeds: int) -> None:
    from django.contrib.auth.models import User

    from feedback import audits, datasets
    from feedback.models import LabelIssue
    from labeling.services.projects import project_create
    from labeling.services.samples import NewSample, samples_add_bulk

    print("## label errors through the product: label_issues_find over a cut version (shuffled 5-fold, the pipeline)")
    owner = User.objects.create_user("bench-errors")
    header = (
        f"{'dataset':14} {'precision':>9} {'recall':>7} {'F1':>6} {'flagged':>8} {'flipped':>8}   per-seed F1   time"
    )
    print(header)
    for name, loader in [("digits", load_digits), ("breast_cancer", load_breast_cancer)]:
        X, y = loader(return_X_y=True)
        fields = [f"f{j:02d}" for j in range(X.shape[1])]
        classes = [str(c) for c in range(int(y.max()) + 1)]
        results, took = [], []
        for seed in range(seeds):
            noisy = flip_labels(y.astype(np.intp), seed)
            project = project_create(
                creator=owner,
                name=f"{name} {seed}",
                labels=classes,
                schema=dict.fromkeys(fields, "numeric"),
                settings=QUIET,
            )
            samples_add_bulk(
                project=project,
                items=[
                    NewSample(
                        external_id=f"r{i}",
                        data={f: float(v) for f, v in zip(fields, X[i], strict=True)},
                        label=classes[noisy[i]],
                    )
                    for i in range(y.size)
                ],
                actor=None,
            )
            datasets.dataset_version_cut(project_id=project.pk, trigger="bench")
            started = time.perf_counter()
            audits.label_issues_find(project_id=project.pk)
            took.append(time.perf_counter() - started)
            flagged = np.zeros(y.size, dtype=bool)
            for external_id in LabelIssue.objects.filter(project=project).values_list("sample__external_id", flat=True):
                flagged[int(external_id[1:])] = True
            results.append((*precision_recall_f1(flagged, noisy != y), int(flagged.sum())))
        p, r, f, n = np.mean(np.array(results), axis=0)
        per_seed = " ".join(f"{row[2]:.3f}" for row in results)
        n_flipped = round(FLIP_RATE * y.size)
        print(f"{name:14} {p:9.3f} {r:7.3f} {f:6.3f} {n:8.1f} {n_flipped:8d}   {per_seed}   {np.mean(took):.1f} s")
        ap, ar = ERROR_ANCHORS[name]
        print(f"{'  anchor (cleanlab)':14} {ap:9.3f} {ar:7.3f} {2 * ap * ar / (ap + ar):6.3f}")
    print()


def bench_audit(n_answers: int, repeats: int = 3) -> None:
    """A big project: ``n_answers`` answers by 50 annotators, 3 per sample, 500 gold samples."""
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.test import Client
    from django.utils import timezone

    from labeling import audit
    from labeling.models import Annotation, LabelMethod, Task
    from labeling.services import consensus as consensus_service
    from labeling.services.gold import gold_set
    from labeling.services.labels import LabelDecision, labels_set
    from labeling.services.people import token_issue
    from labeling.services.projects import project_create, project_update
    from labeling.services.samples import NewSample, samples_add_bulk

    rng = np.random.default_rng(0)
    n_people, per_item = 50, 3
    n_items = n_answers // per_item
    labels = ["approve", "review", "decline", "escalate"]
    print(f"## audit at scale: {n_items * per_item:,} answers, {n_people} annotators, {n_items:,} samples, 500 gold")
    owner = User.objects.create_user("bench-audit", password="bench-password-1")
    project = project_create(
        creator=owner, name="audit", labels=labels, schema={"x": "numeric"}, overlap=per_item, settings=QUIET
    )
    started = time.perf_counter()
    for start in range(0, n_items, 5000):
        samples_add_bulk(
            project=project,
            items=[NewSample(external_id=f"s{i}", data={"x": i}) for i in range(start, min(start + 5000, n_items))],
            actor=None,
        )
    task_of = dict(Task.objects.filter(project=project).values_list("sample_id", "pk"))
    sample_ids = np.array(sorted(task_of), dtype=np.int64)
    people = [User.objects.create_user(f"bench-p{a}") for a in range(n_people)]
    accuracy = rng.uniform(0.4, 0.95, n_people)
    truth = rng.integers(0, len(labels), n_items)
    chosen = np.argsort(rng.random((n_items, n_people)), axis=1)[:, :per_item]
    t0 = timezone.now() - timedelta(days=30)
    batch: list[Any] = []
    for i in range(n_items):
        for a in chosen[i]:
            right = rng.random() < accuracy[a]
            label = truth[i] if right else (truth[i] + rng.integers(1, len(labels))) % len(labels)
            batch.append(
                Annotation(
                    project=project,
                    task_id=task_of[int(sample_ids[i])],
                    sample_id=int(sample_ids[i]),
                    user=people[a],
                    label=labels[label],
                    duration_ms=int(rng.integers(300, 8000)),
                    created_at=t0 + timedelta(seconds=int(i * 30 * 86400 / n_items)),
                )
            )
        if len(batch) >= 15000:
            Annotation.objects.bulk_create(batch, batch_size=5000)
            batch = []
    Annotation.objects.bulk_create(batch, batch_size=5000)
    Task.objects.filter(project=project).update(status=1, n_answers=per_item)
    labels_set(
        project_id=project.pk,
        decisions=[
            LabelDecision(
                sample_id=int(sample_ids[i]),
                label=labels[truth[i]],
                confidence=1.0,
                method=LabelMethod.MAJORITY,
                n_annotations=3,
            )
            for i in range(500, n_items)
        ],
        actor=None,
    )
    gold_set(project_id=project.pk, items=[(int(sample_ids[i]), labels[truth[i]]) for i in range(500)], actor=owner)
    print(f"setup: {time.perf_counter() - started:.1f} s")

    def timed(fn: Any) -> tuple[float, Any]:
        began = time.perf_counter()
        out = fn()
        return time.perf_counter() - began, out

    read = [timed(lambda: audit.project_answers(project=project))[0] for _ in range(repeats)]
    selector = [timed(lambda: audit.project_audit(project=project))[0] for _ in range(repeats)]
    refresh, stored = timed(lambda: audit.audit_refresh(project_id=project.pk))
    assert stored, "the refresh stored nothing"
    refresh_again, _ = timed(lambda: audit.audit_refresh(project_id=project.pk))
    key, _ = token_issue(user=owner)
    client = Client(HTTP_AUTHORIZATION=f"Token {key}", HTTP_HOST="localhost")
    api = []
    size = 0
    for _ in range(repeats):
        took, response = timed(lambda: client.get(f"/api/projects/{project.pk}/audit/"))
        assert response.status_code == 200, response.content[:300]
        api.append(took)
        size = len(response.content)
    project_update(project_id=project.pk, changes={"consensus": {"method": "dawid_skene"}})
    first, result = timed(lambda: consensus_service.consensus_reestimate(project_id=project.pk))
    again, _ = timed(lambda: consensus_service.consensus_reestimate(project_id=project.pk))
    print(f"{'read the answers (labeling.answers)':52} median {statistics.median(read):6.2f} s")
    print(f"{'audit selector (everything but label issues)':52} median {statistics.median(selector):6.2f} s")
    print(f"{'audit_refresh (the worker task: compute and store)':52} {refresh:13.2f} s")
    print(f"{'audit_refresh, nothing new (idempotent)':52} {refresh_again:13.3f} s")
    print(
        f"{'GET /api/projects/{id}/audit/ (stored figures)':52} median {statistics.median(api) * 1000:6.1f} ms"
        f"  ({size / 1e3:.0f} kB)"
    )
    print(f"{'consensus_reestimate, first run':52} {first:13.2f} s  ({result.changed} labels changed)")
    print(f"{'consensus_reestimate, nothing new (idempotent)':52} {again:13.3f} s")

    # The answer path under Dawid-Skene with the stored estimate: one new sample per answer.
    project_update(project_id=project.pk, changes={"overlap": 1})
    added = samples_add_bulk(
        project=project, items=[NewSample(external_id=f"late{i}", data={"x": i}) for i in range(300)], actor=None
    )
    late_tasks = dict(
        Task.objects.filter(sample_id__in=[s for s in added.sample_ids if s]).values_list("sample_id", "pk")
    )
    latencies = []
    for k, sample_id in enumerate(added.sample_ids):
        assert sample_id is not None
        began = time.perf_counter()
        _leased_answer(late_tasks[sample_id], people[k % n_people], labels[k % len(labels)])
        latencies.append((time.perf_counter() - began) * 1000)
    latencies.sort()
    print(
        f"{'answer path under dawid_skene (lease made directly)':52} p50 {latencies[len(latencies) // 2]:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)]:.1f} ms"
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--part", choices=["all", "consensus", "errors", "wired", "audit"], default="all")
    parser.add_argument("--shuffle", action="store_true", help="shuffle the cross-validation folds")
    parser.add_argument("--answers", type=int, default=200_000, help="answers in the audit part's project")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")
    if args.part in ("all", "consensus"):
        bench_consensus(args.seeds)
    if args.part in ("all", "errors"):
        bench_errors(args.seeds, args.shuffle)
    if args.part in ("all", "wired", "audit"):
        if not server_answers(args.server):
            print(f"(no PostgreSQL at {args.server}: the database parts are skipped)")
            return
        django_on(args.server)
        try:
            if args.part in ("all", "wired"):
                bench_wired_consensus(args.seeds)
                bench_wired_errors(args.seeds)
            if args.part in ("all", "audit"):
                bench_audit(args.answers)
        finally:
            django_off(args.server)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
