"""The labeling queue: handing out tasks under leases, taking answers, skipping, undoing, re-ranking.

Handing out is one short transaction. On PostgreSQL it reads the project's pending tasks of one
kind through that kind's partial index (``task_pending_idx`` for label tasks, beside small ones for
gold and review tasks) in priority order with ``FOR UPDATE SKIP LOCKED``, so concurrent annotators
never wait on each other's rows and never see the same free slot; nothing on that path counts or
scans the project. On SQLite (the quick start) writers are serialized by the IMMEDIATE transaction
mode instead. ``labeling.queue_pg`` does the hand-out and the answer in one statement each.

The rules:
- a task has ``overlap`` slots; live leases and answers fill them; a lease expires after the
  project's ``queue.lease_seconds`` and its slot is free again (released lazily, by the next
  hand-out that meets it: no sweeper);
- never the same task twice to one annotator (one lease row per task and user); a skip gives the
  task to someone else, never back to the skipper;
- gold tasks (kind ``gold``, never done) are mixed in at the project's ``gold_rate`` while label
  work remains for the annotator, once per annotator, shown like any task (``shown_reason``);
- review tasks go to reviewers, managers and staff only, before label tasks; they are decided with
  ``labeling.services.review.review_decide``, not answered;
- an answer that completes a label task calls ``labeling.services.consensus.task_finalize`` in its
  transaction (an answer on a gold task never does);
- an answer can be undone by its author within ``queue.undo_seconds``.

Lock order everywhere: the task row, then its lease rows, then the rest. That order is what keeps
hand-out, answer, skip, undo and review free of deadlocks.
"""

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.contrib.auth.models import AbstractBaseUser, User
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Q
from django.utils import timezone

from labeling import events, queue_pg
from labeling.bulk import update_from_values
from labeling.models import (
    Annotation,
    Label,
    LabelChange,
    LabelMethod,
    Lease,
    LeaseStatus,
    Membership,
    Project,
    Reason,
    Role,
    Sample,
    SampleStatus,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.project_settings import DEFAULTS, ProjectSettings
from labeling.services import consensus
from labeling.services.people import Conflict

# Who takes tasks, and who is also handed review tasks (staff always may both).
TAKES_TASKS: tuple[str, ...] = (Role.ANNOTATOR, Role.REVIEWER, Role.MANAGER)
TAKES_REVIEWS: tuple[str, ...] = (Role.REVIEWER, Role.MANAGER)
# What annotators are told a gold task is there for: the reason most tasks have.
GOLD_SHOWN_AS = Reason.UNCERTAINTY
# Labels an undo may revert: the ones consensus made from answers.
CONSENSUS_METHODS = (LabelMethod.MAJORITY, LabelMethod.DAWID_SKENE)
# How many candidate rows one hand-out of the general path locks at a time; more than one so that a
# task whose only "free" slot turns out to be taken (stale expiry) does not end the search.
CANDIDATES_PER_ROUND = 4
MAX_ROUNDS = 8
# Pauses between tries of a hand-out that found only rows other transactions held (about 0.13 s
# in all): a queue whose last tasks are being answered is busy, not empty.
BUSY_PAUSES = (0.002, 0.004, 0.008, 0.016, 0.032, 0.064)


@dataclass(frozen=True)
class LeasedTask:
    task: Task
    sample: Sample
    expires_at: datetime
    show_suggestion: bool = False

    @property
    def reason(self) -> str:
        return shown_reason(self.task)

    @property
    def suggestion(self) -> dict[str, Any] | None:
        return self.sample.suggestion if self.show_suggestion else None


def shown_reason(task: Task) -> str:
    """Why the task is in the queue, as annotators are told: a gold task passes for an ordinary one."""
    return GOLD_SHOWN_AS if task.kind == TaskKind.GOLD else task.reason


def shown_kind(task: Task) -> str:
    return TaskKind.LABEL if task.kind == TaskKind.GOLD else task.kind


class Access:
    """How a checked call ended when it did not get to the queue."""

    NOT_FOUND = "not_found"  # no such project or task, or the caller is not a member: 404
    FORBIDDEN = "forbidden"  # a member whose role may not: 403


@dataclass(frozen=True)
class HandOut:
    refused: str | None  # an Access value, or None
    role: str | None
    leased: LeasedTask | None


def _json(value: Any) -> Any:
    # Django reads jsonb as text (its JSONField parses it); a raw cursor sees that text.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _is_staff(user: AbstractBaseUser) -> bool:
    return bool(getattr(user, "is_staff", False))


def _role_of(project_id: int, user: AbstractBaseUser) -> str | None:
    if _is_staff(user):
        return "staff"
    return Membership.objects.filter(project_id=project_id, user_id=user.pk).values_list("role", flat=True).first()


def _reviews(role: str | None) -> bool:
    return role == "staff" or role in TAKES_REVIEWS


# --- handing out ------------------------------------------------------------------------------


def task_lease_next(*, project: Project, user: User, role: str, reviews: bool = True) -> LeasedTask | None:
    """Lease the next task for ``user`` (a member with ``role``, checked by the caller); None when
    nothing is left for them. ``reviews=False`` leaves review tasks out even for reviewers (the
    annotator page, where reviews are not answered but decided on the reviewer's page).

    Gold first when the project's gold_rate draw says so (and label work remains for the user),
    then review tasks for reviewers and managers, then label tasks, each by priority. Never a task
    the user answered, skipped or holds; never more live leases than free slots (overlap minus
    answers). Expired leases on a candidate are released here, lazily. One transaction (one
    statement on PostgreSQL); locks the chosen task row and the rows it inspects, skipping rows
    other transactions hold.
    """
    handed = _lease_next(project.pk, user, roles=TAKES_TASKS, project=project, role=role, reviews=reviews)
    return handed.leased


def task_lease_next_checked(*, project_id: int, user: User, roles: Sequence[str]) -> HandOut:
    """task_lease_next for a caller whose membership is not checked yet: ``refused`` when the
    project does not exist or the caller is not a member (NOT_FOUND) or their role is not among
    ``roles`` (FORBIDDEN). On PostgreSQL the check and the hand-out are one statement."""
    return _lease_next(project_id, user, roles=roles, project=None, role=None)


def _lease_next(
    project_id: int,
    user: User,
    *,
    roles: Sequence[str],
    project: Project | None,
    role: str | None,
    reviews: bool = True,
) -> HandOut:
    now = timezone.now()
    if connection.vendor == "postgresql":
        for pause in (*BUSY_PAUSES, None):
            picked = queue_pg.lease_next(
                project_id=project_id,
                user_id=user.pk,
                staff=_is_staff(user),
                roles=roles,
                review_roles=TAKES_REVIEWS,
                now=now,
                lease_default=DEFAULTS["queue"]["lease_seconds"],
                show_default=DEFAULTS["queue"]["show_suggestion"],
                with_reviews=reviews,
            )
            if not picked.busy or pause is None:
                break
            # Every candidate left was held by another transaction for the moment (another
            # hand-out, an answer): the queue is busy, not empty. Never say "nothing left" then.
            time.sleep(pause)
            now = timezone.now()
        if not picked.found or picked.role is None:
            return HandOut(Access.NOT_FOUND, None, None)
        if not picked.allowed:
            return HandOut(Access.FORBIDDEN, picked.role, None)
        if picked.leased:
            assert picked.expires_at is not None
            sample = Sample(
                **{
                    **picked.sample,
                    "data": _json(picked.sample["data"]),
                    "suggestion": _json(picked.sample["suggestion"]),
                }
            )
            task = Task(status=TaskStatus.PENDING, **picked.fields)
            return HandOut(None, picked.role, LeasedTask(task, sample, picked.expires_at, picked.show_suggestion))
        if picked.task_id is None:
            return HandOut(None, picked.role, None)
        # The candidate's free slot was an expired lease someone else holds again: the general
        # path releases what expired and looks further down the queue.
        role = picked.role
    if project is None:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return HandOut(Access.NOT_FOUND, None, None)
    if role is None:
        role = _role_of(project_id, user)
        if role is None:
            return HandOut(Access.NOT_FOUND, None, None)
        if role != "staff" and role not in roles:
            return HandOut(Access.FORBIDDEN, role, None)
    return HandOut(None, role, _lease_next_orm(project, user, role, now, reviews))


def _eligible(project: Project, user: User, now: datetime, kind: str) -> Any:
    """Pending tasks of the kind with a free slot (or an expired lease) that the user may be handed."""
    held_or_done = Lease.objects.filter(task=OuterRef("pk"), user=user).filter(
        Q(status__in=[LeaseStatus.ANSWERED, LeaseStatus.SKIPPED]) | Q(status=LeaseStatus.LIVE, expires_at__gt=now)
    )
    return (
        Task.objects.filter(project=project, status=TaskStatus.PENDING, kind=kind)
        .filter(Q(n_leased__lt=F("overlap") - F("n_answers")) | Q(lease_expiry__lte=now))
        .filter(~Exists(held_or_done))
    )


def _candidates(project: Project, user: User, now: datetime, kind: str, after: tuple[float, int] | None) -> Any:
    qs = _eligible(project, user, now, kind)
    if after is not None:
        priority, task_id = after
        qs = qs.filter(Q(priority__lt=priority) | Q(priority=priority, id__gt=task_id))
    return qs.order_by("-priority", "id").select_for_update(skip_locked=True, of=("self",))


def _lease_next_orm(project: Project, user: User, role: str, now: datetime, reviews: bool) -> LeasedTask | None:
    queue_settings = ProjectSettings.of(project.settings).queue
    expires_at = now + timedelta(seconds=queue_settings["lease_seconds"])
    show = bool(queue_settings["show_suggestion"])
    gold_first = project.gold_rate > 0 and random.random() < project.gold_rate
    kinds: list[str] = [TaskKind.REVIEW] if reviews and _reviews(role) else []
    kinds.append(TaskKind.LABEL)
    for pause in (*BUSY_PAUSES, None):
        with transaction.atomic():
            if gold_first and _eligible(project, user, now, TaskKind.LABEL).exists():
                kinds.insert(0, TaskKind.GOLD)
                gold_first = False
            for kind in kinds:
                leased = _lease_first_free(project, user, kind, now, expires_at)
                if leased is not None:
                    task, sample = leased
                    return LeasedTask(task, sample, expires_at, show)
        busy = connection.vendor == "postgresql" and any(
            _eligible(project, user, now, kind).exists() for kind in kinds if kind != TaskKind.GOLD
        )
        if not busy or pause is None:
            return None
        time.sleep(pause)
        now = timezone.now()
        expires_at = now + timedelta(seconds=queue_settings["lease_seconds"])
    return None


def _lease_first_free(
    project: Project, user: User, kind: str, now: datetime, expires_at: datetime
) -> tuple[Task, Sample] | None:
    after: tuple[float, int] | None = None
    for _ in range(MAX_ROUNDS):
        batch = list(_candidates(project, user, now, kind, after)[:CANDIDATES_PER_ROUND])
        for task in batch:
            if task.lease_expiry is not None and task.lease_expiry <= now:
                _release_expired(task, now)
            if task.n_leased + task.n_answers >= task.overlap:
                continue
            _lease(task, user, now, expires_at)
            return task, Sample.objects.get(pk=task.sample_id)
        if len(batch) < CANDIDATES_PER_ROUND:
            return None
        after = (batch[-1].priority, batch[-1].pk)
    return None


def _refresh_lease_counts(task: Task) -> None:
    """Recount the task's live leases and their earliest expiry (the task row must be locked)."""
    live = Lease.objects.filter(task=task, status=LeaseStatus.LIVE).aggregate(n=Count("id"), first=Min("expires_at"))
    task.n_leased = live["n"]
    task.lease_expiry = live["first"]


def _release_expired(task: Task, now: datetime) -> None:
    Lease.objects.filter(task=task, status=LeaseStatus.LIVE, expires_at__lte=now).update(status=LeaseStatus.EXPIRED)
    _refresh_lease_counts(task)


def _lease(task: Task, user: User, now: datetime, expires_at: datetime) -> None:
    renewed = Lease.objects.filter(task=task, user=user, status__in=[LeaseStatus.LIVE, LeaseStatus.EXPIRED]).update(
        status=LeaseStatus.LIVE, leased_at=now, expires_at=expires_at
    )
    if not renewed:
        Lease.objects.create(task=task, user=user, status=LeaseStatus.LIVE, leased_at=now, expires_at=expires_at)
    _refresh_lease_counts(task)
    task.save(update_fields=["n_leased", "lease_expiry"])


# --- answering --------------------------------------------------------------------------------


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


def _review_conflict(task_id: int) -> Conflict:
    return Conflict(f"this is a review task: decide it with POST /api/tasks/{task_id}/review/ and a reason")


@dataclass(frozen=True)
class Submitted:
    refused: str | None  # an Access value, or None
    bad_label_of: list[str] | None  # the project's labels, when the label is not one of them
    annotation: Annotation | None


def annotation_submit(*, task_id: int, user: User, label: str, duration_ms: int | None = None) -> Annotation:
    """Record ``user``'s answer on a task they hold a live lease on (raises Conflict otherwise, and
    for a review task, a task no longer pending, or a label not of the project).

    The caller has checked the user's access to the task's project. Locks the task row, then the
    lease. When the task has its ``overlap`` answers it is done and consensus.task_finalize makes
    the final label (labels_finalized is emitted after commit); an answer on a gold task is stored
    and never finalized. On PostgreSQL an answer needing no task_finalize (or completing an
    overlap-1 task under plain majority, whose label the statement writes itself) is one statement.
    """
    result = _submit(task_id, user, label, duration_ms, roles=TAKES_TASKS, trusted=True)
    if result.bad_label_of is not None:
        raise Conflict("that is not a label of this project")
    if result.annotation is None:
        raise Task.DoesNotExist(task_id)
    return result.annotation


def annotation_submit_checked(
    *, task_id: int, user: User, roles: Sequence[str], label: str, duration_ms: int | None = None
) -> Submitted:
    """annotation_submit for a caller whose membership is not checked yet: ``refused`` when the
    task does not exist or the caller is no member of its project (NOT_FOUND) or their role is not
    among ``roles`` (FORBIDDEN); ``bad_label_of`` when the label is not one of the project's.
    Raises Conflict as annotation_submit does. On PostgreSQL the check and the answer are one
    statement (and one commit) unless the answer needs task_finalize."""
    return _submit(task_id, user, label, duration_ms, roles=roles, trusted=_is_staff(user))


def _submit(
    task_id: int, user: User, label: str, duration_ms: int | None, *, roles: Sequence[str], trusted: bool
) -> Submitted:
    now = timezone.now()
    if connection.vendor != "postgresql":
        return _submit_orm(task_id, user, label, duration_ms, roles=roles, trusted=trusted, now=now)
    chosen = DEFAULTS["consensus"]
    done = queue_pg.answer(
        task_id=task_id,
        user_id=user.pk,
        staff=trusted,
        roles=roles,
        label=label,
        duration_ms=duration_ms,
        now=now,
        method_default=chosen["method"],
        review_below_default=float(chosen["review_below"]),
    )
    if not done.found or (done.role is None and not trusted):
        return Submitted(Access.NOT_FOUND, None, None)
    if not done.allowed:
        return Submitted(Access.FORBIDDEN, None, None)
    if done.bad_label_of is not None:
        return Submitted(None, [str(x) for x in _json(done.bad_label_of)], None)
    assert done.project_id is not None and done.sample_id is not None
    task = Task(pk=task_id, project_id=done.project_id, sample_id=done.sample_id, kind=done.kind or TaskKind.LABEL)
    if done.kind == TaskKind.REVIEW:
        raise _review_conflict(task_id)
    if done.needs_finalize:
        return Submitted(None, None, _submit_pg_finalizing(task, user, label, duration_ms, now))
    if done.annotation_id is None:
        _explain_conflict(task, user, now, done.task_status)
    if done.label_changed:
        events.emit_labels_finalized(done.project_id)
    return Submitted(None, None, _annotation(done.annotation_id, task, user, label, duration_ms, now))


def _explain_conflict(task: Task, user: User, now: datetime, task_status: int | None) -> None:
    with transaction.atomic():
        _live_lease(task, user, now)  # raises the Conflict that says why
    if task_status is not None and task_status != TaskStatus.PENDING:
        raise Conflict("this task is no longer pending")
    raise Conflict("you hold no live lease on this task")


def _annotation(
    annotation_id: int | None, task: Task, user: User, label: str, duration_ms: int | None, now: datetime
) -> Annotation:
    return Annotation(
        pk=annotation_id,
        project_id=task.project_id,
        task_id=task.pk,
        sample_id=task.sample_id,
        user=user,
        label=label,
        duration_ms=duration_ms,
        created_at=now,
    )


def _submit_pg_finalizing(task: Task, user: User, label: str, duration_ms: int | None, now: datetime) -> Annotation:
    """The answer and task_finalize in one transaction (two statements and the finalize's)."""
    with transaction.atomic():
        locked = queue_pg.lock_task(task.pk)
        if locked is None:
            raise Task.DoesNotExist(task.pk)
        annotation_id, status = queue_pg.answer_locked(
            task_id=task.pk,
            project_id=task.project_id,
            sample_id=task.sample_id,
            user_id=user.pk,
            label=label,
            duration_ms=duration_ms,
            now=now,
        )
        if annotation_id is None:
            _live_lease(task, user, now)
            raise Conflict("this task is no longer pending" if locked[2] != TaskStatus.PENDING else "no live lease")
        if status == TaskStatus.DONE:
            consensus.task_finalize(task=task)
    return _annotation(annotation_id, task, user, label, duration_ms, now)


def _submit_orm(
    task_id: int,
    user: User,
    label: str,
    duration_ms: int | None,
    *,
    roles: Sequence[str],
    trusted: bool,
    now: datetime,
) -> Submitted:
    with transaction.atomic():
        task = Task.objects.select_for_update(of=("self",)).select_related("project").filter(pk=task_id).first()
        if task is None:
            return Submitted(Access.NOT_FOUND, None, None)
        if not trusted:
            role = _role_of(task.project_id, user)
            if role is None:
                return Submitted(Access.NOT_FOUND, None, None)
            if role != "staff" and role not in roles:
                return Submitted(Access.FORBIDDEN, None, None)
        if label not in task.project.labels:
            return Submitted(None, list(task.project.labels), None)
        if task.kind == TaskKind.REVIEW:
            raise _review_conflict(task_id)
        lease = _live_lease(task, user, now)
        if task.status != TaskStatus.PENDING:
            raise Conflict("this task is no longer pending")
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
        if task.kind == TaskKind.LABEL and task.n_answers >= task.overlap:
            task.status = TaskStatus.DONE
        task.save(update_fields=["n_answers", "n_leased", "lease_expiry", "status"])
        if task.status == TaskStatus.DONE:
            consensus.task_finalize(task=task)
    return Submitted(None, None, annotation)


# --- skipping, releasing, undoing ---------------------------------------------------------------


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


def tasks_release(*, project_id: int, user: User, task_ids: Sequence[int]) -> int:
    """Let go of the user's live leases on these tasks of the project (a page closed with tasks
    it had fetched ahead): they are expired now, so anyone, this user included, may be handed the
    tasks again. Returns how many were released. Locks the task rows (in id order), then leases."""
    now = timezone.now()
    wanted = sorted({int(t) for t in task_ids})[:100]
    released = 0
    with transaction.atomic():
        for task in Task.objects.select_for_update().filter(project_id=project_id, pk__in=wanted).order_by("id"):
            released += Lease.objects.filter(task=task, user=user, status=LeaseStatus.LIVE, expires_at__gt=now).update(
                status=LeaseStatus.EXPIRED, expires_at=now
            )
            _refresh_lease_counts(task)
            task.save(update_fields=["n_leased", "lease_expiry"])
    return released


def annotation_undo(*, task_id: int, user: User) -> LeasedTask:
    """Take back ``user``'s answer on the task, within the project's ``queue.undo_seconds`` of
    giving it: the annotation is deleted, the task is pending again and leased back to the user.
    If the task was done, what its consensus did is reverted: a final label it made goes back to
    what it was before (or away), recorded as a LabelChange with method ``undo``, and a review it
    asked for is cancelled. Raises Conflict when there is no such answer, the grace period is
    over, or the label was since decided otherwise (a reviewer's, say).

    One transaction: locks the task row, then the user's lease, then the sample's final label.
    Emits labels_finalized after commit when a final label changed.
    """
    now = timezone.now()
    with transaction.atomic():
        task = Task.objects.select_for_update().select_related("project").filter(pk=task_id).first()
        if task is None:
            raise Task.DoesNotExist(task_id)
        queue_settings = ProjectSettings.of(task.project.settings).queue
        lease = Lease.objects.select_for_update().filter(task=task, user=user).first()
        annotation = Annotation.objects.filter(task=task, user=user).first()
        if annotation is None or lease is None or lease.status != LeaseStatus.ANSWERED:
            raise Conflict("you have no answer on this task to undo")
        if annotation.created_at < now - timedelta(seconds=queue_settings["undo_seconds"]):
            raise Conflict("too late to undo this answer")
        if task.status == TaskStatus.DONE:
            _revert_consensus(task, user, annotation.created_at, now)
        elif task.status != TaskStatus.PENDING:
            raise Conflict("this task is no longer pending")
        annotation.delete()
        expires_at = now + timedelta(seconds=queue_settings["lease_seconds"])
        lease.status, lease.leased_at, lease.expires_at = LeaseStatus.LIVE, now, expires_at
        lease.save(update_fields=["status", "leased_at", "expires_at"])
        task.n_answers = max(task.n_answers - 1, 0)
        task.status = TaskStatus.PENDING
        _refresh_lease_counts(task)
        task.save(update_fields=["n_answers", "status", "n_leased", "lease_expiry"])
        Sample.objects.filter(pk=task.sample_id, status=SampleStatus.LABELED).exclude(
            Exists(Label.objects.filter(sample_id=OuterRef("pk")))
        ).update(status=SampleStatus.QUEUED)
        sample = Sample.objects.get(pk=task.sample_id)
    return LeasedTask(task, sample, expires_at, bool(queue_settings["show_suggestion"]))


def _revert_consensus(task: Task, user: User, answered_at: datetime, now: datetime) -> None:
    """Undo what finalizing the task did, if the sample's label is still what consensus made."""
    label = Label.objects.select_for_update().filter(sample_id=task.sample_id).first()
    made = (
        LabelChange.objects.filter(sample_id=task.sample_id, method__in=CONSENSUS_METHODS, created_at__gte=answered_at)
        .order_by("id")
        .first()
    )
    reviews = Task.objects.filter(
        sample_id=task.sample_id, kind=TaskKind.REVIEW, status=TaskStatus.PENDING, created_at__gte=answered_at
    )
    if label is not None and made is not None:
        if label.method not in CONSENSUS_METHODS:
            raise Conflict("this answer can no longer be undone: the label was decided since")
        previous = made.old_label
        if previous is None:
            label.delete()
        else:
            label.label, label.method, label.confidence, label.n_annotations, label.updated_at = (
                previous,
                LabelMethod.UNDO,
                1.0,
                0,
                now,
            )
            label.save(update_fields=["label", "method", "confidence", "n_annotations", "updated_at"])
        LabelChange.objects.create(
            project_id=task.project_id,
            sample_id=task.sample_id,
            old_label=made.new_label,
            new_label=previous,
            method=LabelMethod.UNDO,
            actor=user,
            reason="the annotator took back their answer",
            created_at=now,
        )
        events.emit_labels_finalized(task.project_id)
    elif label is not None and label.method not in CONSENSUS_METHODS and label.updated_at >= answered_at:
        raise Conflict("this answer can no longer be undone: the label was decided since")
    reviews.update(status=TaskStatus.CANCELLED, n_leased=0, lease_expiry=None)


# --- re-ranking -------------------------------------------------------------------------------


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
