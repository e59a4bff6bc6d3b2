"""Audit selectors: agreement between annotators and each annotator's scores, over all of a
project's annotations, and the stored copy of those figures that requests read.

``project_audit`` reads the project's answers (``labeling.answers``: one query), its gold samples
and the final labels of the answered samples; everything else is numpy over those arrays
(``labeling.agreement``, ``labeling.consensus``, ``labeling.annotator_scores``): no query per row
or per annotator. Its cost grows with the project, so requests go through ``audit_report``: a
project with at most LIVE_LIMIT answers (one bounded query tells) is audited in the request; a
larger one answers from the figures the worker stored last (``audit_refresh``, the Celery task
``feedback.audit_tasks.refresh_audit``, enqueued after labels change and on a manager's request).
Callers check membership first.
"""

import base64
import hashlib
import math
import zlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from numpy.typing import NDArray

from labeling.agreement import agreement, krippendorff_alpha
from labeling.annotator_scores import annotator_scores, completion_buckets, latest_per_pair
from labeling.answers import ProjectAnswers, project_answers
from labeling.consensus import dawid_skene
from labeling.models import Annotation, DerivedState, Gold, Label, LabelChange, LabelMethod, Project
from labeling.project_settings import ProjectSettings
from labeling.services.consensus import consensus_state

# Flag an annotator on gold accuracy once they gave this many gold answers, else on Dawid-Skene's
# estimated accuracy once they gave this many answers; with fewer there is no evidence either way.
FLAG_MIN_GOLD = 5
FLAG_MIN_ANSWERS = 10
MAX_TIME_BUCKETS = 60
# Dawid-Skene's stopping tolerance here: the figures are shown to 4 decimals, and at 1e-4 they
# equal those at the default 1e-6 to 1e-5 in half the iterations (200,000 answers: 39 against 65).
AUDIT_TOLERANCE = 1e-4
BUCKET_SECONDS = (3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)
# Pairs of annotators listed (those sharing the most items): a crowd of a thousand has ~500,000.
MAX_PAIRS = 1000
# A project with at most this many answers is audited in the request (tens of milliseconds); a
# larger one answers from the stored figures.
LIVE_LIMIT = 5000
REPORT_KEY = "audit"
REPORT_VERSION = 1


def _num(value: float, digits: int = 4) -> float | None:
    """A JSON-able figure: NaN (undefined) becomes null."""
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _per_item(samples: NDArray[np.int64], by_sample: dict[int, int], default: int = -1) -> NDArray[np.intp]:
    """``by_sample`` (sample id -> value) laid out per item of ``samples``; ``default`` elsewhere."""
    out = np.full(samples.size, default, dtype=np.intp)
    if not by_sample or samples.size == 0:
        return out
    ids = np.fromiter(by_sample.keys(), dtype=np.int64, count=len(by_sample))
    values = np.fromiter(by_sample.values(), dtype=np.intp, count=len(by_sample))
    where = np.searchsorted(samples, ids).clip(max=samples.size - 1)
    found = samples[where] == ids
    out[where[found]] = values[found]
    return out


def _time_edges(times: NDArray[np.float64]) -> NDArray[np.float64]:
    start, end = float(times.min()), float(times.max())
    for width in BUCKET_SECONDS:
        first = math.floor(start / width) * width
        count = math.floor((end - first) / width) + 1
        if count <= MAX_TIME_BUCKETS or width == BUCKET_SECONDS[-1]:
            return first + width * np.arange(count + 1, dtype=np.float64)
    raise AssertionError("unreachable")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def agreement_over_time(answers: ProjectAnswers, kept: NDArray[np.intp]) -> list[dict[str, Any]]:
    """Krippendorff's alpha per time bucket (hours, days, weeks, ... so that there are at most
    MAX_TIME_BUCKETS), each item counted in the bucket of its last answer with all its answers."""
    if kept.size == 0:
        return []
    items, labels = answers.items[kept], answers.answer_labels[kept]
    edges = _time_edges(answers.times[kept])
    bucket_of_item = completion_buckets(items, answers.times[kept], n_items=answers.samples.size, edges=edges)
    per_item = np.bincount(items, minlength=answers.samples.size)
    answer_bucket = bucket_of_item[items]
    out = []
    for b in range(edges.size - 1):
        mask = answer_bucket == b
        if not mask.any():
            continue
        n_items = int(np.count_nonzero((bucket_of_item == b) & (per_item >= 2)))
        alpha = krippendorff_alpha(
            items[mask], labels[mask], n_items=answers.samples.size, n_labels=len(answers.labels)
        )
        out.append(
            {
                "start": _iso(edges[b]),
                "end": _iso(edges[b + 1]),
                "n_items": n_items,
                "n_answers": int(mask.sum()),
                "krippendorff_alpha": _num(alpha),
            }
        )
    return out


def project_audit(*, project: Project) -> dict[str, Any]:
    """Agreement (overall, per label, over time, pairwise) and per-annotator scores of a project,
    over all its annotations. The shape of ``GET /api/projects/{id}/audit/`` without its
    ``label_issues`` (which live on the feedback side)."""
    chosen = ProjectSettings.of(project.settings)
    answers = project_answers(project=project)
    labels = answers.labels
    n_labels, n_items, n_annotators = len(labels), int(answers.samples.size), int(answers.users.size)
    index = {label: i for i, label in enumerate(labels)}
    if answers.n == 0:
        return _empty_audit(project, chosen)

    gold_rows = Gold.objects.filter(project_id=project.pk).values_list("sample_id", "label")
    gold = {s: index[g] for s, g in gold_rows if g in index}
    finals = Label.objects.filter(
        project_id=project.pk, sample_id__in=Annotation.objects.filter(project_id=project.pk).values("sample_id")
    ).values_list("sample_id", "label", "method")
    final_label: dict[int, int] = {}
    authoritative: dict[int, int] = {}
    for sample_id, label, method in finals:
        if label in index:
            final_label[sample_id] = index[label]
            authoritative[sample_id] = int(method in (LabelMethod.REVIEW, LabelMethod.IMPORT))
    gold_per_item = _per_item(answers.samples, gold)
    final_per_item = _per_item(answers.samples, final_label)
    kept = latest_per_pair(answers.items, answers.annotators, n_annotators=n_annotators)
    distinct_answers = np.bincount(answers.items[kept], minlength=n_items)
    independent = (distinct_answers >= 2) | (_per_item(answers.samples, authoritative, 0) == 1)

    scores = annotator_scores(
        items=answers.items,
        annotators=answers.annotators,
        labels=answers.answer_labels,
        durations_ms=answers.durations_ms,
        n_annotators=n_annotators,
        gold_labels=gold_per_item,
        final_labels=final_per_item,
        final_independent=independent,
    )
    is_gold = gold_per_item >= 0
    estimate = dawid_skene(
        answers.items,
        answers.annotators,
        answers.answer_labels,
        n_items=n_items,
        n_annotators=n_annotators,
        n_labels=n_labels,
        gold_items=np.flatnonzero(is_gold),
        gold_labels=gold_per_item[is_gold],
        tol=AUDIT_TOLERANCE,
    )
    together = agreement(
        answers.items[kept],
        answers.annotators[kept],
        answers.answer_labels[kept],
        n_items=n_items,
        n_annotators=n_annotators,
        n_labels=n_labels,
    )
    usernames = dict(User.objects.filter(pk__in=answers.users.tolist()).values_list("pk", "username"))
    names = [usernames.get(int(u), f"user {u}") for u in answers.users]

    first, second = np.nonzero(np.triu(together.cohen.shared > 0, k=1))
    shared = together.cohen.shared[first, second]
    top = np.sort(np.argsort(-shared, kind="stable")[:MAX_PAIRS])  # the pairs sharing the most items
    pairs = [
        {"a": names[a], "b": names[b], "kappa": _num(together.cohen.kappa[a, b]), "n": int(together.cohen.shared[a, b])}
        for a, b in zip(first[top].tolist(), second[top].tolist(), strict=True)
    ]
    flag_below = float(chosen.audit["flag_below"])
    annotators = []
    for a in range(n_annotators):
        if scores.n_gold[a] >= FLAG_MIN_GOLD:
            basis = "gold"
        elif scores.n_answers[a] >= FLAG_MIN_ANSWERS:
            basis = "estimated"
        else:
            basis = None
        annotators.append(
            {
                "username": names[a],
                "n_annotations": int(scores.n_answers[a]),
                "gold_accuracy": _num(scores.gold_accuracy[a]),
                "n_gold": int(scores.n_gold[a]),
                "agreement_with_consensus": _num(scores.agreement_with_consensus[a]),
                "n_compared": int(scores.n_compared[a]),
                "estimated_accuracy": _num(estimate.accuracy[a]),
                "confusion_matrix": np.round(estimate.confusion[a], 4).tolist(),
                "median_duration_ms": _num(scores.median_duration_ms[a], 1),
                "flagged": False,
                "flag_basis": basis,
            }
        )
    annotators.sort(key=lambda row: row["username"])
    _flag(annotators, flag_below)
    pooled = np.zeros((n_labels, n_labels), dtype=np.int64)
    if answers.n:
        np.add.at(pooled, (estimate.labels[answers.items], answers.answer_labels), 1)
    return {
        "labels": labels,
        "n_annotations": answers.n,
        "n_items": n_items,
        "n_gold": len(gold),
        "consensus": {
            "method": chosen.consensus["method"],
            "review_below": chosen.consensus["review_below"],
            "estimate": consensus_state(project=project),
        },
        "flag_below": flag_below,
        "agreement": {
            "krippendorff_alpha": _num(together.alpha),
            "fleiss_kappa": _num(together.fleiss_kappa),
            "mean_cohen_kappa": _num(together.cohen.mean),
            "pairwise_cohen_kappa": pairs,
            "n_pairs": int(first.size),
            "n_items": together.n_items,
            "n_answers": together.n_answers,
            "per_label": {
                label: {
                    "krippendorff_alpha": _num(together.per_label_alpha[c]),
                    "fleiss_kappa": _num(together.per_label_fleiss_kappa[c]),
                    "cohen_kappa": _num(together.per_label_cohen[c]),
                }
                for c, label in enumerate(labels)
            },
        },
        "agreement_over_time": agreement_over_time(answers, kept),
        "annotators": annotators,
        "confusion": {
            "rows": "consensus (Dawid-Skene) label",
            "columns": "answered label",
            "counts": pooled.tolist(),
        },
        "dawid_skene": {
            "priors": np.round(estimate.priors, 4).tolist(),
            "iterations": estimate.iterations,
            "converged": estimate.converged,
        },
    }


def _empty_audit(project: Project, chosen: ProjectSettings) -> dict[str, Any]:
    labels = list(project.labels)
    return {
        "labels": labels,
        "n_annotations": 0,
        "n_items": 0,
        "n_gold": Gold.objects.filter(project_id=project.pk).count(),
        "consensus": {
            "method": chosen.consensus["method"],
            "review_below": chosen.consensus["review_below"],
            "estimate": consensus_state(project=project),
        },
        "flag_below": float(chosen.audit["flag_below"]),
        "agreement": {
            "krippendorff_alpha": None,
            "fleiss_kappa": None,
            "mean_cohen_kappa": None,
            "pairwise_cohen_kappa": [],
            "n_pairs": 0,
            "n_items": 0,
            "n_answers": 0,
            "per_label": {
                label: {"krippendorff_alpha": None, "fleiss_kappa": None, "cohen_kappa": None} for label in labels
            },
        },
        "agreement_over_time": [],
        "annotators": [],
        "confusion": {
            "rows": "consensus (Dawid-Skene) label",
            "columns": "answered label",
            "counts": [[0] * len(labels) for _ in labels],
        },
        "dawid_skene": None,
    }


def _flag(annotators: list[dict[str, Any]], flag_below: float) -> None:
    """Flag the annotators whose score (on gold when they answered enough gold, else Dawid-Skene's
    estimate) is below ``flag_below``; done on reading too, so a changed threshold applies at once."""
    for row in annotators:
        basis = row["flag_basis"]
        score = row["gold_accuracy"] if basis == "gold" else row["estimated_accuracy"] if basis else None
        row["flagged"] = bool(score is not None and score < flag_below)


def _pack(report: dict[str, Any]) -> str:
    # Compressed into one string: a request reads it whole, and a JSON string costs the parser
    # next to nothing where a tree of thousands of numbers would not.
    return base64.b64encode(zlib.compress(orjson.dumps(report), 6)).decode()


def _unpack(packed: str) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(zlib.decompress(base64.b64decode(packed)))
    return out


def _marks(project_id: int) -> dict[str, Any]:
    """What the figures depend on: the newest answer, the newest final-label change, the gold set."""
    gold = sorted(Gold.objects.filter(project_id=project_id).values_list("sample_id", "label"))
    return {
        "answer": Annotation.objects.filter(project_id=project_id).aggregate(top=Max("id"))["top"] or 0,
        "change": LabelChange.objects.filter(project_id=project_id).aggregate(top=Max("id"))["top"] or 0,
        "gold": hashlib.sha256(orjson.dumps(gold)).hexdigest()[:16],
    }


def _newer_or_same(stored: dict[str, Any], ours: dict[str, Any]) -> bool:
    """Whether stored figures cover at least what ours do (answers and label changes only grow;
    a different gold set at the same marks is taken as newer only when it is ours)."""
    grown = stored["answer"] >= ours["answer"] and stored["change"] >= ours["change"]
    later = (stored["answer"], stored["change"]) != (ours["answer"], ours["change"])
    return grown and (later or stored["gold"] == ours["gold"])


def is_small(*, project_id: int) -> bool:
    """Whether the project has at most LIVE_LIMIT answers (reads at most LIVE_LIMIT + 1 index entries)."""
    return Annotation.objects.filter(project_id=project_id).values("id")[: LIVE_LIMIT + 1].count() <= LIVE_LIMIT


def audit_refresh(*, project_id: int, force: bool = False) -> bool:
    """Compute ``project_audit`` and store it for requests to read; returns whether it stored.

    Nothing to do (False) when the project is gone, small enough to be audited live (unless
    ``force``), or when the stored figures already cover the newest answer, final-label change
    and gold set (idempotent: a redelivered task is harmless). Computes without locks, then locks
    the project row to store (serializing with other writers) in ``DerivedState`` under REPORT_KEY.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None or (not force and is_small(project_id=project_id)):
        return False
    marks = _marks(project_id)
    stored = DerivedState.read(project_id=project_id, key=REPORT_KEY)
    if stored.get("v") == REPORT_VERSION and stored.get("marks") == marks:
        return False
    report = project_audit(project=project)
    computed_at = timezone.now().isoformat()
    with transaction.atomic():
        locked = Project.objects.select_for_update().filter(pk=project_id).first()
        if locked is None:
            return False
        current = DerivedState.read(project_id=project_id, key=REPORT_KEY)
        if current.get("v") == REPORT_VERSION and _newer_or_same(current["marks"], marks):
            return False  # a run that started later stored first: keep its figures
        entry = {"v": REPORT_VERSION, "marks": marks, "computed_at": computed_at, "report": _pack(report)}
        DerivedState.write(project_id=project_id, key=REPORT_KEY, value=entry)
    return True


def audit_report(*, project: Project) -> dict[str, Any]:
    """The audit figures a request shows, with ``source`` and ``computed_at``: computed now for a
    small project (``source: "live"``), else the stored ones (``"stored"``; the empty figures with
    ``"pending"`` until the worker stored some). Bounded: never reads all of a large project."""
    chosen = ProjectSettings.of(project.settings)
    if is_small(project_id=project.pk):
        return {**project_audit(project=project), "source": "live", "computed_at": timezone.now().isoformat()}
    stored = DerivedState.read(project_id=project.pk, key=REPORT_KEY)
    if stored.get("v") != REPORT_VERSION:
        return {**_empty_audit(project, chosen), "source": "pending", "computed_at": None}
    report = _unpack(stored["report"])
    report["flag_below"] = float(chosen.audit["flag_below"])
    _flag(report["annotators"], report["flag_below"])
    report["consensus"] = {
        "method": chosen.consensus["method"],
        "review_below": chosen.consensus["review_below"],
        "estimate": consensus_state(project=project),
    }
    return {**report, "source": "stored", "computed_at": stored["computed_at"]}
