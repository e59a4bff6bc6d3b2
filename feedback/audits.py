"""Likely label errors: confident learning over a dataset version, and sending the suspects to review.

``label_issues_find`` (run by the Celery task ``feedback.audit_tasks.find_label_issues`` on the
training queue, after each automatic cut and on a manager's request) reads a version's rows, fits
the project's own pipeline (``feedback.pipelines``, the project's model family and parameters) once
per fold of a stratified K-fold, and runs ``feedback.label_issues.find_label_issues`` on the
out-of-fold probabilities. Each flagged row becomes a LabelIssue with the most probable other
label as its suggestion and its estimated probability of being wrong as its score.

The open issues of a project are those of its latest analysis: a new analysis replaces the open
ones of older versions, and leaves alone the ones in review. A manager sends open issues to review
in one action (``label_issues_send_to_review``: one review task per sample, via
``labeling.services.review.review_request``); the reviewer's decision sets the final label (and so
the next dataset version). An issue in review counts as resolved once its sample has no pending
review task: ``label_issues_resolve`` writes that down, and reads show it at once
(``effective_status``).
"""

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from feedback import datasets, features, pipelines, training
from feedback.label_issues import find_label_issues, out_of_fold_with
from feedback.models import DatasetVersion, LabelIssue, LabelIssueStatus
from labeling import audit as audit_selectors
from labeling.models import Project, Sample, Task, TaskKind, TaskStatus
from labeling.services.review import review_request

logger = logging.getLogger(__name__)

MIN_ROWS = 30  # fewer labeled rows than this say nothing about label errors
N_SPLITS = 5
SEED = 0
CHUNK = 5000


@dataclass(frozen=True)
class FindResult:
    dataset_version: int  # the version's number
    n_rows: int
    n_found: int  # rows flagged
    n_created: int  # new open issues (flagged rows already in review are not repeated)
    skipped: str = ""  # why nothing was computed, if so


def _latest_version(project_id: int) -> DatasetVersion | None:
    return DatasetVersion.objects.filter(project_id=project_id, pruned_at__isnull=True).order_by("-version").first()


def label_issues_find(
    *, project_id: int, dataset_version_id: int | None = None, force: bool = False
) -> FindResult | None:
    """Flag the likely label errors of a dataset version (default: the latest), replacing the
    project's open issues. None when the project or version is gone.

    Idempotent on the version: a version analyzed before is not analyzed again unless ``force``
    (which replaces its open issues). Versions with fewer than MIN_ROWS rows, or one class, are
    skipped, and so is a version whose out-of-fold predictions are no more accurate than always
    answering the commonest label (the features then say nothing about the labels). The fitting
    runs outside any transaction; the writes are one transaction that locks the project row.
    Samples that already have an issue in review or resolved in this version are not flagged again.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    if dataset_version_id is None:
        version = _latest_version(project_id)
    else:
        version = DatasetVersion.objects.filter(pk=dataset_version_id, project_id=project_id).first()
    if version is None or version.pruned_at is not None:
        return None
    label_issues_resolve(project_id=project_id)
    if not force and LabelIssue.objects.filter(dataset_version=version).exists():
        n = LabelIssue.objects.filter(dataset_version=version).count()
        return FindResult(version.version, version.size, n, 0, skipped="already analyzed")

    labels = list(project.labels)
    index = {label: i for i, label in enumerate(labels)}
    rows = [row for row in datasets.rows_at(version=version) if row["label"] in index]
    y = np.fromiter((index[row["label"]] for row in rows), dtype=np.intp, count=len(rows))
    if len(rows) < MIN_ROWS or np.unique(y).size < 2:
        return FindResult(version.version, len(rows), 0, 0, skipped=f"needs {MIN_ROWS} rows of 2 labels or more")
    X = features.matrix([row["data"] for row in rows], project.schema)
    names = np.array([row["label"] for row in rows], dtype=object)
    config = training.training_config(project)

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = pipelines.fit(project.schema, config, X[train], names[train], seed=SEED)
        return pipelines.probabilities_over(model, X[test], labels)

    probabilities = out_of_fold_with(fit_predict, y, n_classes=len(labels), n_splits=N_SPLITS, seed=SEED)
    accuracy = float((probabilities.argmax(axis=1) == y).mean())
    base_rate = float(np.bincount(y).max() / y.size)
    if accuracy <= base_rate:
        # A model that does no better than always guessing the commonest label tells label errors
        # from nothing: every row would look suspect.
        return FindResult(
            version.version,
            len(rows),
            0,
            0,
            skipped=f"the model predicts no better than the class priors ({accuracy:.3f} <= {base_rate:.3f})",
        )
    found = find_label_issues(probabilities, y)
    flagged_ext = [rows[i]["external_id"] for i in found.indices]
    sample_of: dict[str, int] = {}
    for start in range(0, len(flagged_ext), CHUNK):
        sample_of.update(
            Sample.objects.filter(
                project_id=project_id, external_id__in=flagged_ext[start : start + CHUNK]
            ).values_list("external_id", "pk")
        )
    with transaction.atomic():
        # The project row serializes finders: two of them (the automatic one after a cut and a
        # manager's) would otherwise both insert the same (version, sample) issues.
        if not list(Project.objects.select_for_update().filter(pk=project_id).values_list("pk", flat=True)):
            return None
        LabelIssue.objects.filter(project_id=project_id, status=LabelIssueStatus.OPEN).delete()
        busy = set(
            LabelIssue.objects.filter(project_id=project_id)
            .filter(status=LabelIssueStatus.IN_REVIEW)
            .values_list("sample_id", flat=True)
        ) | set(LabelIssue.objects.filter(dataset_version=version).values_list("sample_id", flat=True))
        new = [
            LabelIssue(
                project_id=project_id,
                sample_id=sample_of[ext],
                dataset_version=version,
                given_label=labels[int(given)],
                suggested_label=labels[int(suggested)],
                score=float(score),
            )
            for ext, given, suggested, score in zip(flagged_ext, found.given, found.suggested, found.score, strict=True)
            if ext in sample_of and sample_of[ext] not in busy
        ]
        LabelIssue.objects.bulk_create(new, batch_size=CHUNK)
    logger.info(
        "project %s version %s: %d likely label errors of %d rows", project_id, version.version, len(new), len(rows)
    )
    return FindResult(version.version, len(rows), int(found.indices.size), len(new))


def label_issues_request(*, project_id: int, force: bool = True) -> DatasetVersion | None:
    """Ask for an analysis of the latest dataset version, after commit (a manager's button).
    None when the project has no version yet."""
    from feedback import audit_tasks

    version = _latest_version(project_id)
    if version is None:
        return None
    transaction.on_commit(partial(audit_tasks.find_label_issues.delay, project_id, version.pk, force))
    return version


def label_issues_send_to_review(*, project_id: int, issue_ids: Sequence[int] | None = None) -> int:
    """Send open issues (all of the project's, or those of ``issue_ids``) to review: one review
    task per sample (samples with one pending are left as they are) and the issues marked in
    review. Returns how many issues were sent. One transaction; locks the issue rows."""
    with transaction.atomic():
        issues = LabelIssue.objects.select_for_update().filter(project_id=project_id, status=LabelIssueStatus.OPEN)
        if issue_ids is not None:
            issues = issues.filter(pk__in=list(issue_ids))
        picked = list(issues.order_by("-score", "id").values_list("pk", "sample_id"))
        if not picked:
            return 0
        review_request(project_id=project_id, sample_ids=[sample_id for _, sample_id in picked])
        LabelIssue.objects.filter(pk__in=[pk for pk, _ in picked]).update(status=LabelIssueStatus.IN_REVIEW)
    return len(picked)


def _review_pending() -> Exists:
    return Exists(Task.objects.filter(sample_id=OuterRef("sample_id"), kind=TaskKind.REVIEW, status=TaskStatus.PENDING))


def label_issues_resolve(*, project_id: int) -> int:
    """Mark resolved the issues in review whose sample no longer has a pending review task (the
    reviewer decided). Returns how many. One statement."""
    return (
        LabelIssue.objects.filter(project_id=project_id, status=LabelIssueStatus.IN_REVIEW)
        .filter(~_review_pending())
        .update(status=LabelIssueStatus.RESOLVED)
    )


def label_issues_list(*, project_id: int, status: str | None = None) -> QuerySet[LabelIssue]:
    """The project's issues, most likely wrong first, with ``effective_status`` (an issue in review
    whose review was decided reads as resolved before label_issues_resolve writes it down)."""
    qs = (
        LabelIssue.objects.filter(project_id=project_id)
        .select_related("sample", "dataset_version")
        .annotate(review_pending=_review_pending())
        .order_by("-score", "id")
    )
    if status == LabelIssueStatus.RESOLVED:
        qs = qs.filter(Q(status=LabelIssueStatus.RESOLVED) | Q(status=LabelIssueStatus.IN_REVIEW, review_pending=False))
    elif status == LabelIssueStatus.IN_REVIEW:
        qs = qs.filter(status=LabelIssueStatus.IN_REVIEW, review_pending=True)
    elif status is not None:
        qs = qs.filter(status=status)
    return qs


def label_issues_unresolved(*, project_id: int) -> QuerySet[LabelIssue]:
    """Open issues and issues whose review is still pending, most likely wrong first."""
    return label_issues_list(project_id=project_id).filter(
        Q(status=LabelIssueStatus.OPEN) | Q(status=LabelIssueStatus.IN_REVIEW, review_pending=True)
    )


def effective_status(issue: LabelIssue) -> str:
    if issue.status == LabelIssueStatus.IN_REVIEW and not getattr(issue, "review_pending", True):
        return LabelIssueStatus.RESOLVED
    return issue.status


def issue_out(issue: LabelIssue) -> dict[str, Any]:
    return {
        "id": issue.pk,
        "external_id": issue.sample.external_id,
        "given_label": issue.given_label,
        "suggested_label": issue.suggested_label,
        "score": round(issue.score, 4),
        "status": effective_status(issue),
        "dataset_version": issue.dataset_version.version,
        "created_at": issue.created_at,
    }


def issue_counts(*, project_id: int) -> dict[str, int]:
    """Issues per effective status."""
    counts = {status.value: 0 for status in LabelIssueStatus}
    grouped = (
        LabelIssue.objects.filter(project_id=project_id)
        .annotate(review_pending=_review_pending())
        .values_list("status", "review_pending")
        .annotate(n=Count("id"))
        .order_by()
    )
    for status, pending, n in grouped:
        key = LabelIssueStatus.RESOLVED if status == LabelIssueStatus.IN_REVIEW and not pending else status
        counts[key] += n
    return counts


AUDIT_ISSUES = 200  # label issues shown with the audit (the list endpoint pages through all)
CSV_COLUMNS = [
    "username",
    "n_annotations",
    "gold_accuracy",
    "n_gold",
    "agreement_with_consensus",
    "n_compared",
    "estimated_accuracy",
    "median_duration_ms",
    "flagged",
    "flag_basis",
]


REFRESH_DELAY = 60  # seconds between audit refreshes a process asks for after labels change


def project_audit_report(*, project: Project) -> dict[str, Any]:
    """``GET /api/projects/{id}/audit/``'s body: the labeling side's figures
    (``labeling.audit.audit_report``: live for a small project, else the stored ones) with the
    unresolved likely label errors (at most AUDIT_ISSUES, by index) and their counts."""
    report = audit_selectors.audit_report(project=project)
    issues = label_issues_unresolved(project_id=project.pk)[:AUDIT_ISSUES]
    report["label_issues"] = [issue_out(issue) for issue in issues]
    report["label_issue_counts"] = issue_counts(project_id=project.pk)
    return report


def annotators_csv(report: dict[str, Any]) -> str:
    """The annotator table of an audit report as CSV (empty cells for undefined figures)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in report["annotators"]:
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return buffer.getvalue()


def _refresh_key(project_id: int) -> str:
    return f"labelloop:audit-refresh:{project_id}"


def audit_refresh_soon(project_id: int) -> None:
    """A labels_finalized listener (registered in feedback.apps): enqueue a refresh of the stored
    audit figures in REFRESH_DELAY seconds, unless this process did within that time or the project
    is small enough to be audited live. Runs after commit; a broker failure is logged, not raised
    (the figures are only late, and the next change asks again)."""
    from feedback import audit_tasks

    key = _refresh_key(project_id)
    # The debounce first: this runs after every answer that finalizes a label, and the size check
    # is a query (a bounded one); a small project is looked at again after REFRESH_DELAY.
    if not cache.add(key, True, timeout=REFRESH_DELAY) or audit_selectors.is_small(project_id=project_id):
        return
    try:
        audit_tasks.refresh_audit.apply_async((project_id,), countdown=REFRESH_DELAY)
    except Exception:
        cache.delete(key)
        logger.exception("could not enqueue the audit refresh of project %s", project_id)


def audit_refresh_request(*, project_id: int) -> None:
    """After commit, enqueue a refresh of the stored audit figures now (a manager's request: not
    debounced, and computed even for a small project; the task is idempotent)."""
    from feedback import audit_tasks

    transaction.on_commit(partial(audit_tasks.refresh_audit.delay, project_id, True))
