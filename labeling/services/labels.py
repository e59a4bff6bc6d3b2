"""Final labels and their append-only trail."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from labeling import events
from labeling.models import Label, LabelChange, LabelMethod, Sample, SampleStatus


@dataclass(frozen=True)
class LabelDecision:
    sample_id: int
    label: str
    confidence: float
    method: LabelMethod
    n_annotations: int
    reason: str = ""


def labels_set(*, project_id: int, decisions: Sequence[LabelDecision], actor: User | None) -> int:
    """Make each decision the sample's final label, recording a LabelChange when the label changes.

    Assumes the caller holds whatever locks make the decisions current (the task row for a
    consensus, the sample rows for an import). Marks the samples labeled. Emits labels_finalized
    after commit when any label changed. Returns the number of labels that changed.
    """
    if not decisions:
        return 0
    now = timezone.now()
    by_sample = {d.sample_id: d for d in decisions}
    with transaction.atomic():
        existing = {lab.sample_id: lab for lab in Label.objects.filter(sample_id__in=by_sample)}
        to_create, to_update, changes = [], [], []
        for sample_id, d in by_sample.items():
            old = existing.get(sample_id)
            if old is None:
                to_create.append(
                    Label(
                        sample_id=sample_id,
                        project_id=project_id,
                        label=d.label,
                        confidence=d.confidence,
                        method=d.method,
                        n_annotations=d.n_annotations,
                        updated_at=now,
                    )
                )
            else:
                if old.label == d.label and old.confidence == d.confidence and old.method == d.method:
                    continue
                to_update.append(old)
                old.confidence, old.method, old.n_annotations, old.updated_at = (
                    d.confidence,
                    d.method,
                    d.n_annotations,
                    now,
                )
                if old.label == d.label:
                    continue
            changes.append(
                LabelChange(
                    project_id=project_id,
                    sample_id=sample_id,
                    old_label=old.label if old else None,
                    new_label=d.label,
                    method=d.method,
                    actor=actor,
                    reason=d.reason,
                    created_at=now,
                )
            )
            if old is not None:
                old.label = d.label
        Label.objects.bulk_create(to_create, batch_size=2000)
        if to_update:
            Label.objects.bulk_update(
                to_update, ["label", "confidence", "method", "n_annotations", "updated_at"], batch_size=1000
            )
        LabelChange.objects.bulk_create(changes, batch_size=2000)
        Sample.objects.filter(pk__in=list(by_sample)).exclude(status=SampleStatus.LABELED).update(
            status=SampleStatus.LABELED
        )
        if changes:
            events.emit_labels_finalized(project_id)
    return len(changes)
