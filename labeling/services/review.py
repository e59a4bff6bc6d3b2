"""Review: sending samples to reviewers, and their decisions.

A review task is a pending task of kind ``review`` (reason ``review``) that only reviewers,
managers and staff are handed; consensus sends ties and unsure labels there, audits likely label
errors. A reviewer decides a sample with a label and a reason: the decision becomes the sample's
final label (method ``review``, confidence 1) and is always kept in its label-change trail with who
and why, even when it confirms the label that was there. A reviewer may also decide a sample whose
label a majority made over answers that disagreed, without a review task (its done label task
stands for it).
"""

from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from labeling.models import (
    Label,
    LabelChange,
    LabelMethod,
    Lease,
    LeaseStatus,
    Reason,
    Sample,
    SampleStatus,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.services.labels import LabelDecision, labels_set
from labeling.services.people import Conflict

REVIEW_PRIORITY = 2.0  # above every uncertainty score (which lie in [0, 1]): reviews go first
WHY_MAX = 500


def review_request(*, project_id: int, sample_ids: Sequence[int], priority: float = REVIEW_PRIORITY) -> int:
    """Queue one review task per sample that has none pending; returns how many were created.

    Samples of other projects are ignored. The samples' status becomes queued until the review
    is decided (their current final label, if any, stays until then). The queue's counters follow
    (database triggers).
    """
    now = timezone.now()
    with transaction.atomic():
        wanted = set(Sample.objects.filter(project_id=project_id, pk__in=list(sample_ids)).values_list("pk", flat=True))
        pending = set(
            Task.objects.filter(sample_id__in=wanted, kind=TaskKind.REVIEW, status=TaskStatus.PENDING).values_list(
                "sample_id", flat=True
            )
        )
        new = sorted(wanted - pending)
        Task.objects.bulk_create(
            [
                Task(
                    project_id=project_id,
                    sample_id=sample_id,
                    kind=TaskKind.REVIEW,
                    reason=Reason.REVIEW,
                    priority=priority,
                    overlap=1,
                    created_at=now,
                )
                for sample_id in new
            ]
        )
        Sample.objects.filter(pk__in=new, status=SampleStatus.UNLABELED).update(status=SampleStatus.QUEUED)
    return len(new)


def review_decide(*, task_id: int, reviewer: User, label: str, why: str = "") -> Label:
    """Decide a sample: ``label`` becomes its final label (method review), and the decision is
    recorded in its trail with ``reviewer`` and ``why``.

    ``task_id`` is a pending review task (it is closed: done, answered by the reviewer, other
    reviewers' leases on it expired), or a done label task whose sample a majority labeled (a
    second look at a disagreement); any other pending review task of the sample is closed too.
    The caller has checked that ``label`` is one of the project's labels, that ``why`` is not
    blank and that ``reviewer`` may review in the task's project. Raises Conflict for any other
    task. One transaction: locks the task row, then its leases, then the sample's final label.
    Emits labels_finalized after commit when the label changed.
    """
    now = timezone.now()
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if task is None:
            raise Conflict("no such task")
        if task.kind == TaskKind.REVIEW:
            if task.status != TaskStatus.PENDING:
                raise Conflict("this review was decided already")
        elif task.kind != TaskKind.LABEL or task.status != TaskStatus.DONE:
            raise Conflict("only review tasks and finished label tasks can be decided by a reviewer")
        others = list(
            Task.objects.select_for_update()
            .filter(sample_id=task.sample_id, kind=TaskKind.REVIEW, status=TaskStatus.PENDING)
            .exclude(pk=task.pk)
            .order_by("id")
        )
        closing = [t.pk for t in others] + ([task.pk] if task.kind == TaskKind.REVIEW else [])
        Lease.objects.filter(task_id__in=closing, user=reviewer).update(status=LeaseStatus.ANSWERED)
        Lease.objects.filter(task_id__in=closing, status=LeaseStatus.LIVE).update(status=LeaseStatus.EXPIRED)
        Task.objects.filter(pk__in=closing).update(status=TaskStatus.DONE, n_answers=1, n_leased=0, lease_expiry=None)
        current = Label.objects.select_for_update().filter(sample_id=task.sample_id).first()
        reason = why.strip()[:WHY_MAX]
        changed = labels_set(
            project_id=task.project_id,
            decisions=[
                LabelDecision(
                    sample_id=task.sample_id,
                    label=label,
                    confidence=1.0,
                    method=LabelMethod.REVIEW,
                    n_annotations=1,
                    reason=reason,
                )
            ],
            actor=reviewer,
        )
        if not changed:
            # A decision that confirms the label is a decision too: the trail keeps it.
            LabelChange.objects.create(
                project_id=task.project_id,
                sample_id=task.sample_id,
                old_label=current.label if current else None,
                new_label=label,
                method=LabelMethod.REVIEW,
                actor=reviewer,
                reason=reason,
                created_at=now,
            )
        Sample.objects.filter(pk=task.sample_id).exclude(status=SampleStatus.LABELED).update(
            status=SampleStatus.LABELED
        )
        return Label.objects.get(sample_id=task.sample_id)
