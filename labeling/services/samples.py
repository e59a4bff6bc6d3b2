"""Adding samples to a project in bulk: the sample rows, their queue tasks, and known labels."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from labeling.models import LabelMethod, Project, Reason, Sample, SampleStatus, Task
from labeling.services.labels import LabelDecision, labels_set


@dataclass(frozen=True)
class NewSample:
    external_id: str
    data: dict[str, Any]
    observed_at: datetime | None = None
    label: str | None = None  # a known true label (seed data): stored as final, not queued
    priority: float = 0.0
    reason: str = Reason.RANDOM
    suggestion: dict[str, Any] | None = None


@dataclass(frozen=True)
class AddedSamples:
    sample_ids: list[int | None]  # per input item: the new sample's id, or None for a duplicate
    n_created: int
    n_duplicates: int


def samples_add_bulk(*, project: Project, items: Sequence[NewSample], actor: User | None) -> AddedSamples:
    """Store the items whose external_id is new to the project; a known external_id is a duplicate.

    Within ``items`` the first occurrence of an external_id wins. Unlabeled items get one pending
    task each with their priority and reason; labeled items get a final label (method import).
    One transaction. A concurrent insert of the same external_id raises IntegrityError: the caller
    retries, and the retry then sees it as a duplicate.
    """
    now = timezone.now()
    wanted = [item.external_id for item in items]
    with transaction.atomic():
        known = set(
            Sample.objects.filter(project=project, external_id__in=wanted).values_list("external_id", flat=True)
        )
        fresh: list[tuple[int, NewSample]] = []
        for index, item in enumerate(items):
            if item.external_id not in known:
                known.add(item.external_id)
                fresh.append((index, item))
        rows = [
            Sample(
                project=project,
                external_id=item.external_id,
                data=item.data,
                observed_at=item.observed_at,
                created_at=now,
                status=SampleStatus.LABELED if item.label is not None else SampleStatus.QUEUED,
                suggestion=item.suggestion,
            )
            for _, item in fresh
        ]
        Sample.objects.bulk_create(rows, batch_size=2000)
        tasks = [
            Task(
                project=project,
                sample_id=row.pk,
                reason=item.reason,
                priority=item.priority,
                overlap=project.overlap,
                created_at=now,
            )
            for row, (_, item) in zip(rows, fresh, strict=True)
            if item.label is None
        ]
        Task.objects.bulk_create(tasks, batch_size=2000)
        decisions = [
            LabelDecision(
                sample_id=row.pk, label=item.label, confidence=1.0, method=LabelMethod.IMPORT, n_annotations=0
            )
            for row, (_, item) in zip(rows, fresh, strict=True)
            if item.label is not None
        ]
        labels_set(project_id=project.pk, decisions=decisions, actor=actor)
    ids: list[int | None] = [None] * len(items)
    for row, (index, _) in zip(rows, fresh, strict=True):
        ids[index] = row.pk
    return AddedSamples(sample_ids=ids, n_created=len(rows), n_duplicates=len(items) - len(rows))
