"""The labeling queue: handing out tasks under leases, taking answers, skipping, re-ranking.

Handing out is one short transaction. On PostgreSQL it reads the project's pending tasks through
the partial index ``task_pending_idx`` in priority order with ``FOR UPDATE SKIP LOCKED``, so
concurrent annotators never wait on each other's rows and never see the same free slot. On SQLite
(the quick start) writers are serialized by the IMMEDIATE transaction mode instead.

Lock order everywhere: the task row, then its lease rows. That order is what keeps hand-out,
answer and skip free of deadlocks.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Q
from django.utils import timezone

from labeling import queue_pg
from labeling.bulk import update_from_values
from labeling.models import (
    Annotation,
    Lease,
    LeaseStatus,
    Project,
    Role,
    Sample,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.project_settings import ProjectSettings
from labeling.services import consensus
from labeling.services.people import Conflict

# How many candidate rows one hand-out locks at a time; more than one so that a task whose only
# "free" slot turns out to be taken (stale expiry) does not end the search.
CANDIDATES_PER_ROUND = 4
MAX_ROUNDS = 8


@dataclass(frozen=True)
class LeasedTask:
    task: Task
    sample: Sample
    expires_at: datetime


def _refresh_lease_counts(task: Task) -> None:
    """Recount the task's live leases and their earliest expiry (the task row must be locked)."""
    live = Lease.objects.filter(task=task, status=LeaseStatus.LIVE).aggregate(n=Count("id"), first=Min("expires_at"))
    task.n_leased = live["n"]
    task.lease_expiry = live["first"]


def _release_expired(task: Task, now: datetime) -> None:
    Lease.objects.filter(task=task, status=LeaseStatus.LIVE, expires_at__lte=now).update(status=LeaseStatus.EXPIRED)
    _refresh_lease_counts(task)


def _candidates(project: Project, user: User, now: datetime, kinds: Sequence[str], after: tuple[float, int] | None):
    held_or_done = Lease.objects.filter(task=OuterRef("pk"), user=user).filter(
        Q(status__in=[LeaseStatus.ANSWERED, LeaseStatus.SKIPPED]) | Q(status=LeaseStatus.LIVE, expires_at__gt=now)
    )
    qs = (
        Task.objects.filter(project=project, status=TaskStatus.PENDING, kind__in=kinds)
        .filter(Q(n_leased__lt=F("overlap") - F("n_answers")) | Q(lease_expiry__lte=now))
        .filter(~Exists(held_or_done))
    )
    if after is not None:
        priority, task_id = after
        qs = qs.filter(Q(priority__lt=priority) | Q(priority=priority, id__gt=task_id))
    return qs.order_by("-priority", "id").select_for_update(skip_locked=True, of=("self",))


def task_lease_next(*, project: Project, user: User, role: str) -> LeasedTask | None:
    """Lease the highest-priority task that still needs an answer from ``user``; None when none is left.

    Never a task the user answered, skipped or holds; never more live leases than free slots
    (overlap minus answers). Expired leases on a candidate are released here, lazily, so no sweeper
    is needed. Review tasks go only to reviewers and managers. One transaction; locks the chosen
    task row and the rows it inspects (skipping rows other transactions hold).
    """
    now = timezone.now()
    lease_seconds = ProjectSettings.of(project.settings).queue["lease_seconds"]
    expires_at = now + timedelta(seconds=lease_seconds)
    kinds = [TaskKind.LABEL, TaskKind.GOLD]
    if role in (Role.REVIEWER, Role.MANAGER):
        kinds.append(TaskKind.REVIEW)
    after: tuple[float, int] | None = None
    with transaction.atomic():
        if connection.vendor == "postgresql":
            picked = queue_pg.lease_next(
                project_id=project.pk, user_id=user.pk, kinds=kinds, now=now, expires_at=expires_at
            )
            if picked is None:
                return None
            if picked.leased:
                return LeasedTask(task=_task_of(picked.fields), sample=_sample_of(picked.sample), expires_at=expires_at)
            # The candidate's free slot was an expired lease someone else holds again: the general
            # path below releases what expired and looks further down the queue.
        for _ in range(MAX_ROUNDS):
            batch = list(_candidates(project, user, now, kinds, after)[:CANDIDATES_PER_ROUND])
            for task in batch:
                if task.lease_expiry is not None and task.lease_expiry <= now:
                    _release_expired(task, now)
                if task.n_leased + task.n_answers >= task.overlap:
                    continue
                _lease(task, user, now, expires_at)
                sample = Sample.objects.get(pk=task.sample_id)
                return LeasedTask(task=task, sample=sample, expires_at=expires_at)
            if len(batch) < CANDIDATES_PER_ROUND:
                return None
            after = (batch[-1].priority, batch[-1].pk)
    return None


def _json(value: Any) -> Any:
    # Django reads jsonb as text (its JSONField parses it); a raw cursor sees that text.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _task_of(fields: dict[str, Any]) -> Task:
    return Task(status=TaskStatus.PENDING, **fields)


def _sample_of(fields: dict[str, Any]) -> Sample:
    return Sample(**{**fields, "data": _json(fields["data"]), "suggestion": _json(fields["suggestion"])})


def _lease(task: Task, user: User, now: datetime, expires_at: datetime) -> None:
    renewed = Lease.objects.filter(task=task, user=user, status__in=[LeaseStatus.LIVE, LeaseStatus.EXPIRED]).update(
        status=LeaseStatus.LIVE, leased_at=now, expires_at=expires_at
    )
    if not renewed:
        Lease.objects.create(task=task, user=user, status=LeaseStatus.LIVE, leased_at=now, expires_at=expires_at)
    _refresh_lease_counts(task)
    task.save(update_fields=["n_leased", "lease_expiry"])


def _live_lease(task: Task, user: User, now: datetime) -> Lease:
    lease = Lease.objects.select_for_update().filter(task=task, user=user).first()
    if lease is None:
        raise Conflict("you hold no lease on this task")
    if lease.status == LeaseStatus.EXPIRED:
        raise Conflict("your lease on this task expired")
    if lease.status == LeaseStatus.ANSWERED:
        raise Conflict("you already answered this task")
    if lease.status == LeaseStatus.SKIPPED:
        raise Conflict("you skipped this task")
    if lease.expires_at <= now:
        raise Conflict("your lease on this task expired")
    return lease


def annotation_submit(*, task_id: int, user: User, label: str, duration_ms: int | None = None) -> Annotation:
    """Record ``user``'s answer on a task they hold a live lease on (raises Conflict otherwise).

    The caller has checked that ``label`` is one of the project's labels. Locks the task row, then
    the lease. When the task has its ``overlap`` answers it is done: consensus (majority vote)
    makes the final label, and labels_finalized is emitted after commit.
    """
    now = timezone.now()
    if connection.vendor == "postgresql":
        return _annotation_submit_pg(task_id=task_id, user=user, label=label, duration_ms=duration_ms, now=now)
    with transaction.atomic():
        task = Task.objects.select_for_update(of=("self",)).select_related("project").get(pk=task_id)
        lease = _live_lease(task, user, now)
        try:
            with transaction.atomic():
                annotation = Annotation.objects.create(
                    project_id=task.project_id,
                    task=task,
                    sample_id=task.sample_id,
                    user=user,
                    label=label,
                    duration_ms=duration_ms,
                    created_at=now,
                )
        except IntegrityError as exc:
            raise Conflict("you already answered this task") from exc
        lease.status = LeaseStatus.ANSWERED
        lease.save(update_fields=["status"])
        task.n_answers += 1
        _refresh_lease_counts(task)
        if task.n_answers >= task.overlap:
            task.status = TaskStatus.DONE
            _finalize(task)
        task.save(update_fields=["n_answers", "n_leased", "lease_expiry", "status"])
    return annotation


def _annotation_submit_pg(
    *, task_id: int, user: User, label: str, duration_ms: int | None, now: datetime
) -> Annotation:
    """annotation_submit in two statements: lock the task row, then queue_pg.ANSWER."""
    with transaction.atomic():
        locked = queue_pg.lock_task(task_id)
        if locked is None:
            raise Task.DoesNotExist(task_id)
        sample_id, project_id, _ = locked
        annotation_id, status = queue_pg.answer(
            task_id=task_id,
            project_id=project_id,
            sample_id=sample_id,
            user_id=user.pk,
            label=label,
            duration_ms=duration_ms,
            now=now,
        )
        task = Task(pk=task_id, project_id=project_id, sample_id=sample_id)
        if annotation_id is None:
            _live_lease(task, user, now)  # raises the Conflict that says why
            raise Conflict("you hold no live lease on this task")
        if status == TaskStatus.DONE:
            _finalize(task)
    return Annotation(
        pk=annotation_id,
        project_id=project_id,
        task_id=task_id,
        sample_id=sample_id,
        user=user,
        label=label,
        duration_ms=duration_ms,
        created_at=now,
    )


def _finalize(task: Task) -> None:
    consensus.task_finalize(task=task)


def task_skip(*, task_id: int, user: User) -> None:
    """Give up a leased task: it goes to someone else, never back to this user. Raises Conflict
    when the user holds no live lease on it. Locks the task row, then the lease."""
    now = timezone.now()
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        lease = _live_lease(task, user, now)
        lease.status = LeaseStatus.SKIPPED
        lease.save(update_fields=["status"])
        _refresh_lease_counts(task)
        task.save(update_fields=["n_leased", "lease_expiry"])


def tasks_reprioritize(*, project_id: int, updates: Sequence[tuple[int, float, str]]) -> int:
    """Set (priority, reason) of the pending label tasks of the given samples: (sample_id, priority,
    reason) triples. One set-based statement per chunk, no row locks held beyond it."""
    table = Task._meta.db_table
    return update_from_values(
        table=table,
        key="sample_id",
        columns=["priority", "reason"],
        rows=updates,
        where=f"{table}.status = %s AND {table}.kind = %s AND {table}.project_id = %s",
        params=[TaskStatus.PENDING, TaskKind.LABEL, project_id],
    )
