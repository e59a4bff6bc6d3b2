"""Audit selectors: agreement between annotators and each annotator's scores, over all of a
project's annotations.

One read of the project's answers (``values_list`` over the (project, created_at) index), one of
its gold samples and one of the final labels of the answered samples; everything else is numpy
over those arrays (``labeling.agreement``, ``labeling.consensus``, ``labeling.annotator_scores``):
no query per row or per annotator. Callers check membership first.
"""

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from numpy.typing import NDArray

from labeling.agreement import agreement, krippendorff_alpha
from labeling.annotator_scores import annotator_scores, completion_buckets, latest_per_pair
from labeling.answers import ProjectAnswers, project_answers
from labeling.consensus import dawid_skene
from labeling.models import Annotation, Gold, Label, LabelMethod, Project
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

    pairs = []
    first, second = np.nonzero(np.triu(together.cohen.shared > 0, k=1))
    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        pairs.append(
            {
                "a": names[a],
                "b": names[b],
                "kappa": _num(together.cohen.kappa[a, b]),
                "n": int(together.cohen.shared[a, b]),
            }
        )
    flag_below = float(chosen.audit["flag_below"])
    annotators = []
    for a in range(n_annotators):
        if scores.n_gold[a] >= FLAG_MIN_GOLD:
            basis, score = "gold", float(scores.gold_accuracy[a])
        elif scores.n_answers[a] >= FLAG_MIN_ANSWERS:
            basis, score = "estimated", float(estimate.accuracy[a])
        else:
            basis, score = None, float("nan")
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
                "flagged": bool(basis is not None and score < flag_below),
                "flag_basis": basis,
            }
        )
    annotators.sort(key=lambda row: row["username"])
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
