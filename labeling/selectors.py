"""Reads on the labeling side. Every selector scopes by project; callers check membership first."""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.utils import timezone

from labeling.models import (
    Annotation,
    Label,
    LabelChange,
    Lease,
    LeaseStatus,
    Membership,
    Project,
    Sample,
    SampleStatus,
    Task,
    TaskStatus,
)

AnyUser = AbstractBaseUser | AnonymousUser


def _uid(user: AnyUser) -> int:
    return int(user.pk) if user.pk is not None else -1


def projects_for_user(*, user: AnyUser) -> QuerySet[Project]:
    if getattr(user, "is_staff", False):
        return Project.objects.all()
    return Project.objects.filter(memberships__user_id=_uid(user))


def membership_role(*, project_id: int, user: AnyUser) -> str | None:
    """The user's role in the project, "staff" for staff users, None for non-members (and for
    ids no project can have)."""
    if not 0 < project_id < 2**63:
        return None
    if getattr(user, "is_staff", False):
        return "staff"
    return Membership.objects.filter(project_id=project_id, user_id=_uid(user)).values_list("role", flat=True).first()


def project_counts(*, project: Project) -> dict[str, int]:
    """Indexed counts of the project's rows (each an index-only count on PostgreSQL)."""
    samples = Sample.objects.filter(project=project)
    return {
        "samples": samples.count(),
        "queued": Task.objects.filter(project=project, status=TaskStatus.PENDING).count(),
        "labeled": Label.objects.filter(project=project).count(),
    }


def queue_list(*, project: Project, limit: int) -> QuerySet[Task]:
    """Pending tasks in hand-out order (the order of ``task_pending_idx``)."""
    return (
        Task.objects.filter(project=project, status=TaskStatus.PENDING)
        .select_related("sample")
        .order_by("-priority", "id")[:limit]
    )


def sample_by_external_id(*, project: Project, external_id: str) -> Sample | None:
    return Sample.objects.filter(project=project, external_id=external_id).first()


def sample_history(*, sample: Sample) -> dict[str, Any]:
    """A sample's tasks, annotations, final label and label changes."""
    label = Label.objects.filter(sample=sample).first()
    return {
        "tasks": list(
            Task.objects.filter(sample=sample)
            .order_by("id")
            .values("id", "kind", "reason", "priority", "status", "overlap", "n_answers", "created_at")
        ),
        "annotations": list(
            Annotation.objects.filter(sample=sample)
            .order_by("id")
            .values("task_id", "user__username", "label", "duration_ms", "created_at")
        ),
        "label": label,
        "label_changes": list(
            LabelChange.objects.filter(sample=sample)
            .order_by("id")
            .values("old_label", "new_label", "method", "actor__username", "reason", "created_at")
        ),
    }


def samples_list(*, project: Project, status: str | None) -> QuerySet[Sample]:
    qs = Sample.objects.filter(project=project)
    if status is not None:
        qs = qs.filter(status=SampleStatus[status.upper()])
    return qs.order_by("id")


def labels_list(*, project: Project) -> QuerySet[Label]:
    return Label.objects.filter(project=project).select_related("sample").order_by("sample_id")


def task_held_by(*, project: Project, user: AnyUser) -> Lease | None:
    """The user's newest live, unexpired lease in the project (to resume after a page reload)."""
    return (
        Lease.objects.filter(
            task__project=project,
            task__status=TaskStatus.PENDING,
            user_id=_uid(user),
            status=LeaseStatus.LIVE,
            expires_at__gt=timezone.now(),
        )
        .select_related("task", "task__sample")
        .order_by("-leased_at")
        .first()
    )


def answered_today(*, user: AnyUser, project: Project) -> int:
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return Annotation.objects.filter(user_id=_uid(user), created_at__gte=start, task__project=project).count()
