"""Review: sending samples to reviewers, and their decisions.

A review task is a pending task of kind ``review`` (reason ``review``) that only reviewers and
managers are handed. A reviewer's decision becomes the sample's final label (method ``review``),
with who and why kept in the label-change trail.
"""

from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from labeling.models import LabelMethod, Reason, Sample, SampleStatus, Task, TaskKind, TaskStatus
from labeling.services.labels import LabelDecision, labels_set
from labeling.services.people import Conflict

REVIEW_PRIORITY = 2.0  # above every uncertainty score (which lie in [0, 1]): reviews go first


def review_request(*, project_id: int, sample_ids: Sequence[int], priority: float = REVIEW_PRIORITY) -> int:
    """Queue one review task per sample that has none pending; returns how many were created.

    Samples of other projects are ignored. The samples' status becomes queued until the review
    is decided (their current final label, if any, stays until then).
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
    return len(new)


def review_decide(*, task_id: int, reviewer: User, label: str, why: str = "") -> None:
    """Close a pending review task with ``reviewer``'s decision as the final label.

    The caller has checked that ``label`` is one of the project's labels and that ``reviewer``
    may review in the task's project. Locks the task row. Raises Conflict when the task is not a
    pending review task.
    """
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if task is None or task.kind != TaskKind.REVIEW or task.status != TaskStatus.PENDING:
            raise Conflict("this is not a pending review task")
        task.status = TaskStatus.DONE
        task.n_answers = 1
        task.save(update_fields=["status", "n_answers"])
        labels_set(
            project_id=task.project_id,
            decisions=[
                LabelDecision(
                    sample_id=task.sample_id,
                    label=label,
                    confidence=1.0,
                    method=LabelMethod.REVIEW,
                    n_annotations=1,
                    reason=why[:500],
                )
            ],
            actor=reviewer,
        )
        Sample.objects.filter(pk=task.sample_id).update(status=SampleStatus.LABELED)
