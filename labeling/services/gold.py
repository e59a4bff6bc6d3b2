"""Gold samples: known answers that score annotators without their knowing.

A gold sample has a Gold row (its known label) and one pending task of kind ``gold`` (reason
``gold``, priority 0, overlap GOLD_OVERLAP so that it is never done): the queue hands it out at the
project's ``gold_rate`` to each annotator once, like any task. Answers on it are stored as usual and
never change a final label (consensus skips gold samples). While a sample is gold its pending label
task is cancelled, so no annotator is handed the same sample twice (which would give gold away).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from labeling.models import (
    Gold,
    Label,
    Lease,
    LeaseStatus,
    Project,
    Reason,
    Sample,
    SampleStatus,
    Task,
    TaskKind,
    TaskStatus,
)

GOLD_OVERLAP = 32767  # the largest PositiveSmallIntegerField: a gold task is never done
GOLD_PRIORITY = 0.0


@dataclass(frozen=True)
class GoldResult:
    created: int  # new gold samples
    updated: int  # gold samples whose known label changed
    unchanged: int
    cancelled_tasks: int  # pending label tasks of these samples, cancelled


def _cancel_pending(task_ids: list[int]) -> int:
    """Cancel pending tasks (rows locked by the caller) and expire their live leases, so that an
    annotator holding one gets a clear conflict instead of answering a cancelled task."""
    if not task_ids:
        return 0
    Lease.objects.filter(task_id__in=task_ids, status=LeaseStatus.LIVE).update(status=LeaseStatus.EXPIRED)
    return Task.objects.filter(pk__in=task_ids, status=TaskStatus.PENDING).update(
        status=TaskStatus.CANCELLED, n_leased=0, lease_expiry=None
    )


def gold_set(*, project_id: int, items: Sequence[tuple[int, str]], actor: User | None) -> GoldResult:
    """Make each ``(sample_id, label)`` a gold sample with that known label (changing the label of
    one that is gold already). The caller has checked that the samples are the project's and the
    labels its labels; the last item for a sample wins.

    One transaction. Locks the samples' pending tasks (task rows, then their leases: the queue's
    lock order), creates one pending gold task per sample that has none, and cancels the samples'
    pending label tasks. Existing final labels stay as they are. An unlabeled sample is marked
    queued (its gold task is pending).
    """
    wanted = dict(items)
    if not wanted:
        return GoldResult(0, 0, 0, 0)
    ids = sorted(wanted)
    now = timezone.now()
    with transaction.atomic():
        pending = list(
            Task.objects.select_for_update()
            .filter(sample_id__in=ids, status=TaskStatus.PENDING)
            .order_by("id")
            .values_list("id", "sample_id", "kind")
        )
        existing = {g.sample_id: g for g in Gold.objects.filter(sample_id__in=ids)}
        new = [
            Gold(sample_id=s, project_id=project_id, label=wanted[s], created_by=actor, created_at=now)
            for s in ids
            if s not in existing
        ]
        changed = [g for s, g in existing.items() if g.label != wanted[s]]
        for g in changed:
            g.label = wanted[g.sample_id]
        Gold.objects.bulk_create(new)
        Gold.objects.bulk_update(changed, ["label"])
        with_gold_task = {s for _, s, kind in pending if kind == TaskKind.GOLD}
        Task.objects.bulk_create(
            [
                Task(
                    project_id=project_id,
                    sample_id=s,
                    kind=TaskKind.GOLD,
                    reason=Reason.GOLD,
                    priority=GOLD_PRIORITY,
                    overlap=GOLD_OVERLAP,
                    created_at=now,
                )
                for s in ids
                if s not in with_gold_task
            ]
        )
        cancelled = _cancel_pending([t for t, _, kind in pending if kind == TaskKind.LABEL])
        Sample.objects.filter(pk__in=ids, status=SampleStatus.UNLABELED).update(status=SampleStatus.QUEUED)
    return GoldResult(
        created=len(new), updated=len(changed), unchanged=len(existing) - len(changed), cancelled_tasks=cancelled
    )


def gold_remove(*, project: Project, sample_ids: Sequence[int]) -> int:
    """Stop treating the samples as gold; returns how many were. Their pending gold tasks are
    cancelled (answers already given stay, and no longer score anyone); a sample without a final
    label is queued again for labeling (a pending label task, reason ``manual``, priority 0).

    One transaction; locks the samples' pending tasks, then their leases.
    """
    now = timezone.now()
    with transaction.atomic():
        gold_ids = sorted(
            Gold.objects.filter(project_id=project.pk, sample_id__in=list(sample_ids)).values_list(
                "sample_id", flat=True
            )
        )
        if not gold_ids:
            return 0
        pending = list(
            Task.objects.select_for_update()
            .filter(sample_id__in=gold_ids, status=TaskStatus.PENDING)
            .order_by("id")
            .values_list("id", "sample_id", "kind")
        )
        Gold.objects.filter(sample_id__in=gold_ids).delete()
        _cancel_pending([t for t, _, kind in pending if kind == TaskKind.GOLD])
        has_label_task = {s for _, s, kind in pending if kind == TaskKind.LABEL}
        labeled = set(Label.objects.filter(sample_id__in=gold_ids).values_list("sample_id", flat=True))
        requeue = [s for s in gold_ids if s not in labeled and s not in has_label_task]
        Task.objects.bulk_create(
            [
                Task(
                    project_id=project.pk,
                    sample_id=s,
                    kind=TaskKind.LABEL,
                    reason=Reason.MANUAL,
                    priority=0.0,
                    overlap=project.overlap,
                    created_at=now,
                )
                for s in requeue
            ]
        )
        Sample.objects.filter(pk__in=requeue).update(status=SampleStatus.QUEUED)
    return len(gold_ids)
