"""Reads on the labeling side. Every selector scopes by project; callers check membership first.

Nothing here counts a project's rows per request: counts come from the counters the database keeps
(``labeling.services.counters``), lists are bounded by a limit and read through an index in their
order, and a person's own figures (answered today, their leases) read that person's rows only.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from labeling.models import (
    Annotation,
    Label,
    LabelChange,
    LabelMethod,
    Lease,
    LeaseStatus,
    Membership,
    Project,
    Sample,
    SampleStatus,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.services.counters import project_counters

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
    """The project's counts (``samples``, ``queued``: every pending task, ``labeled``), from its
    counters: a handful of rows whatever the project's size."""
    counters = project_counters(project_id=project.pk)
    return {"samples": counters["samples"], "queued": counters["queued"], "labeled": counters["labeled"]}


def queue_list(*, project: Project, limit: int, reviews: bool = True) -> list[Task]:
    """Pending tasks in hand-out order: review tasks first (when the caller is handed them), then
    label tasks, each by priority through its partial index. Gold tasks are not listed: they are
    mixed in at the project's gold_rate, not queued in order."""
    kinds = [TaskKind.REVIEW, TaskKind.LABEL] if reviews else [TaskKind.LABEL]
    out: list[Task] = []
    for kind in kinds:
        if len(out) >= limit:
            break
        out += list(
            Task.objects.filter(project=project, status=TaskStatus.PENDING, kind=kind)
            .select_related("sample")
            .order_by("-priority", "id")[: limit - len(out)]
        )
    return out


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


# --- the annotator's desk -----------------------------------------------------------------------


def leases_held(*, project: Project, user: AnyUser, now: datetime | None = None) -> list[Lease]:
    """The user's live, unexpired leases on the project's pending tasks, oldest first, with their
    task and sample (to resume after a page reload). Reads the user's live leases by index."""
    moment = now or timezone.now()
    return list(
        Lease.objects.filter(
            user_id=_uid(user),
            status=LeaseStatus.LIVE,
            expires_at__gt=moment,
            task__project=project,
            task__status=TaskStatus.PENDING,
        )
        .select_related("task", "task__sample")
        .order_by("leased_at", "id")
    )


def task_held_by(*, project: Project, user: AnyUser, now: datetime | None = None) -> Lease | None:
    """The user's oldest live lease on a pending task of the project (the task on screen when the
    page is reloaded), with its task and sample; None when they hold none."""
    held = leases_held(project=project, user=user, now=now)
    return held[0] if held else None


def start_of_day(now: datetime | None = None) -> datetime:
    moment = timezone.localtime(now or timezone.now())
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def answered_today(*, user: AnyUser, project: Project) -> int:
    """The user's answers in the project since midnight: their own rows, by index."""
    return Annotation.objects.filter(user_id=_uid(user), created_at__gte=start_of_day(), project_id=project.pk).count()


def annotation_last(*, user: AnyUser, project: Project) -> Annotation | None:
    """The user's newest answer in the project."""
    return Annotation.objects.filter(user_id=_uid(user), project_id=project.pk).order_by("-created_at", "-id").first()


def left_for(*, project: Project, user: AnyUser, reviews: bool, cap: int) -> tuple[int, bool]:
    """How many pending tasks are left for ``user``: label tasks (and review tasks for those who
    get them), gold not counted (they are not announced). From the project's counters while the
    queue is longer than ``cap`` (the project's queue, then); below it exactly what the user may
    still be handed (a bounded count, without the tasks they answered or skipped). Returns the
    number and whether it is the project's queue rather than the user's own."""
    counters = project_counters(project_id=project.pk)
    total = counters["queued_label"] + (counters["queued_review"] if reviews else 0)
    if total > cap:
        return total, True
    kinds = [TaskKind.LABEL, TaskKind.REVIEW] if reviews else [TaskKind.LABEL]
    done = Lease.objects.filter(
        task=OuterRef("pk"), user_id=_uid(user), status__in=[LeaseStatus.ANSWERED, LeaseStatus.SKIPPED]
    )
    pending = Task.objects.filter(project=project, status=TaskStatus.PENDING, kind__in=kinds).filter(~Exists(done))
    return pending.order_by()[: cap + 1].count(), False


# --- review -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewItem:
    task: Task | None  # the pending review task, or the done label task whose answers disagreed
    sample: Sample
    label: Label | None  # the current final label, if any
    answers: list[dict[str, Any]]  # every answer on the sample: username, label, duration_ms, created_at
    changes: list[dict[str, Any]]  # the sample's label-change trail, oldest first
    why: str  # what the answers show: disagreement, or who sent it


def _review_items(tasks: list[Task]) -> list[ReviewItem]:
    sample_ids = [task.sample_id for task in tasks]
    answers: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in (
        Annotation.objects.filter(sample_id__in=sample_ids)
        .order_by("id")
        .values("sample_id", "user__username", "label", "duration_ms", "created_at")
    ):
        answers[row["sample_id"]].append(dict(row))
    changes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for change in (
        LabelChange.objects.filter(sample_id__in=sample_ids)
        .order_by("id")
        .values("sample_id", "old_label", "new_label", "method", "actor__username", "reason", "created_at")
    ):
        changes[change["sample_id"]].append(dict(change))
    labels = {label.sample_id: label for label in Label.objects.filter(sample_id__in=sample_ids)}
    out = []
    for task in tasks:
        given = answers.get(task.sample_id, [])
        tally: dict[str, int] = defaultdict(int)
        for answer in given:
            tally[answer["label"]] += 1
        if len(tally) > 1:
            why = "answers disagree: " + ", ".join(
                f"{n} {label}" for label, n in sorted(tally.items(), key=lambda kv: -kv[1])
            )
        elif given:
            why = f"sent to review ({len(given)} answer{'s' if len(given) != 1 else ''}, all {next(iter(tally))})"
        else:
            why = "sent to review"
        label = labels.get(task.sample_id)
        if (
            label is not None
            and label.method in (LabelMethod.MAJORITY, LabelMethod.DAWID_SKENE)
            and task.kind == TaskKind.REVIEW
        ):
            why += f"; final label {label.label} at confidence {label.confidence:.2f}"
        out.append(ReviewItem(task, task.sample, label, given, changes.get(task.sample_id, []), why))
    return out


def reviews_pending(*, project: Project, limit: int, offset: int = 0) -> list[ReviewItem]:
    """Pending review tasks in hand-out order (their partial index), each with every answer on
    its sample, its final label and its trail (three queries for the page, whatever its size)."""
    tasks = list(
        Task.objects.filter(project=project, status=TaskStatus.PENDING, kind=TaskKind.REVIEW)
        .select_related("sample")
        .order_by("-priority", "id")[offset : offset + limit]
    )
    return _review_items(tasks)


def review_item(*, project: Project, task_id: int) -> ReviewItem | None:
    """One item of the reviewer's page: a review task of the project (pending or decided), or a
    done label task of it, with every answer on its sample and its trail."""
    task = (
        Task.objects.filter(pk=task_id, project=project, kind__in=[TaskKind.REVIEW, TaskKind.LABEL])
        .select_related("sample")
        .first()
    )
    return _review_items([task])[0] if task is not None else None


def disagreements(*, project: Project, limit: int) -> list[ReviewItem]:
    """Samples whose final label a majority made over answers that disagreed (confidence below 1),
    no reviewer having decided since, newest first; each with the done label task and its answers.
    Walks the project's labels backwards by index until ``limit`` are found."""
    labels = list(
        Label.objects.filter(project=project, method=LabelMethod.MAJORITY, confidence__lt=1.0, n_annotations__gt=1)
        .exclude(
            Exists(
                Task.objects.filter(sample_id=OuterRef("sample_id"), kind=TaskKind.REVIEW, status=TaskStatus.PENDING)
            )
        )
        .order_by("-sample_id")
        .values_list("sample_id", flat=True)[:limit]
    )
    tasks = {
        task.sample_id: task
        for task in Task.objects.filter(sample_id__in=labels, kind=TaskKind.LABEL, status=TaskStatus.DONE)
        .select_related("sample")
        .order_by("id")
    }
    return _review_items([tasks[s] for s in labels if s in tasks])


# --- the manager's dashboard ----------------------------------------------------------------------


def queue_composition(*, project: Project) -> list[tuple[str, str, int]]:
    """(kind, reason, pending tasks) of the project, largest first: a GROUP BY over its pending
    tasks (an index-only walk of the partial indexes, so O(pending); a dashboard read, never on the
    annotators' path)."""
    rows = (
        Task.objects.filter(project=project, status=TaskStatus.PENDING)
        .values("kind", "reason")
        .annotate(n=Count("id"))
        .order_by("-n", "kind", "reason")
    )
    return [(row["kind"], row["reason"], row["n"]) for row in rows]


@dataclass(frozen=True)
class AnnotatorActivity:
    username: str
    per_hour: list[int]  # answers in each hour of the window, oldest first
    total: int
    durations_ms: list[int]  # the recorded times of their answers in the window


def activity(
    *, project: Project, hours: int = 24, now: datetime | None = None
) -> tuple[list[datetime], list[AnnotatorActivity]]:
    """Answers per hour per annotator over the last ``hours`` hours, with the time each took:
    the hour starts, and one row per annotator who answered (most answers first). Reads the
    window's answers by the (project, created_at) index: O(answers in the window)."""
    moment = now or timezone.now()
    end = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    starts = [start + timedelta(hours=i) for i in range(hours)]
    per_user: dict[str, list[int]] = {}
    durations: dict[str, list[int]] = defaultdict(list)
    for username, created_at, duration_ms in (
        Annotation.objects.filter(project_id=project.pk, created_at__gte=start, created_at__lt=end)
        .values_list("user__username", "created_at", "duration_ms")
        .iterator(chunk_size=5000)
    ):
        counts = per_user.setdefault(username, [0] * hours)
        counts[min(hours - 1, int((created_at - start).total_seconds() // 3600))] += 1
        if duration_ms is not None:
            durations[username].append(duration_ms)
    rows = [AnnotatorActivity(name, counts, sum(counts), durations.get(name, [])) for name, counts in per_user.items()]
    rows.sort(key=lambda row: (-row.total, row.username))
    return starts, rows
