"""Training-set versions: cutting them from the current labels, reading any version, diffs.

A version is the set of DatasetMember rows valid at it: a member is valid in [valid_from,
valid_to). Cutting looks only at the LabelChange rows after the previous version's watermark, so
its cost and the rows it writes grow with the changes, not with the set.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from feedback import sethash
from feedback.models import DatasetMember, DatasetVersion
from labeling.models import Label, LabelChange, Project, Sample

CHUNK = 5000


@dataclass(frozen=True)
class CutResult:
    version: DatasetVersion
    created: bool
    seen_change_id: int  # the newest label change this cut looked at


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def dataset_version_cut(*, project_id: int, trigger: str, actor: User | None = None) -> CutResult:
    """Cut a new version from the current final labels, or return the latest when nothing changed.

    Locks the project row, so cuts of one project are serialized. Reads the label changes after
    the latest version's watermark; writes one member row per added or changed label and closes
    one per changed or removed label. The first version of a project is cut even when empty.
    """
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project_id).values_list("pk").first()
        latest = DatasetVersion.objects.filter(project_id=project_id).order_by("-version").first()
        watermark = latest.last_change_id if latest else 0
        changes = LabelChange.objects.filter(project_id=project_id, id__gt=watermark)
        top = changes.aggregate(top=Max("id"))["top"]
        if top is None:
            if latest is not None:
                return CutResult(latest, created=False, seen_change_id=watermark)
            empty = _create(project_id, None, 0, sethash.EMPTY, 0, (0, 0, 0), trigger, actor)
            return CutResult(empty, created=True, seen_change_id=watermark)
        touched = sorted(set(changes.filter(id__lte=top).values_list("sample_id", flat=True)))
        number = (latest.version if latest else 0) + 1
        added, changed, removed, value = _apply_changes(project_id, touched, number, latest)
        if not (added or changed or removed) and latest is not None:
            return CutResult(latest, created=False, seen_change_id=top)
        size = (latest.size if latest else 0) + added - removed
        version = _create(project_id, latest, number, value, size, (added, changed, removed), trigger, actor, top)
    return CutResult(version, created=True, seen_change_id=top)


def _apply_changes(
    project_id: int, touched: list[int], number: int, latest: DatasetVersion | None
) -> tuple[int, int, int, int]:
    value = sethash.from_hex(latest.hash) if latest else sethash.EMPTY
    added = changed = removed = 0
    for ids in _chunks(touched):
        current = dict(Label.objects.filter(sample_id__in=ids).values_list("sample_id", "label"))
        members = {m.sample_id: m for m in DatasetMember.objects.filter(sample_id__in=ids, valid_to__isnull=True)}
        external = dict(Sample.objects.filter(pk__in=ids).values_list("pk", "external_id"))
        close: list[int] = []
        new_rows: list[DatasetMember] = []
        plus: list[tuple[str, str]] = []
        minus: list[tuple[str, str]] = []
        for sample_id in ids:
            label, member = current.get(sample_id), members.get(sample_id)
            if member is not None and member.label == label:
                continue
            if member is not None:
                close.append(member.pk)
                minus.append((external[sample_id], member.label))
            if label is not None:
                new_rows.append(
                    DatasetMember(project_id=project_id, sample_id=sample_id, label=label, valid_from=number)
                )
                plus.append((external[sample_id], label))
            if member is None:
                added += 1
            elif label is None:
                removed += 1
            else:
                changed += 1
        DatasetMember.objects.filter(pk__in=close).update(valid_to=number)
        DatasetMember.objects.bulk_create(new_rows, batch_size=CHUNK)
        value = sethash.combine(value, added=plus, removed=minus)
    return added, changed, removed, value


def _create(
    project_id: int,
    parent: DatasetVersion | None,
    number: int,
    value: int,
    size: int,
    diff: tuple[int, int, int],
    trigger: str,
    actor: User | None,
    watermark: int | None = None,
) -> DatasetVersion:
    return DatasetVersion.objects.create(
        project_id=project_id,
        version=max(number, 1),
        hash=sethash.to_hex(value),
        parent=parent,
        size=size,
        n_added=diff[0],
        n_changed=diff[1],
        n_removed=diff[2],
        last_change_id=watermark if watermark is not None else (parent.last_change_id if parent else 0),
        trigger=trigger,
        created_by=actor,
        created_at=timezone.now(),
    )


def members_at(*, version: DatasetVersion) -> QuerySet[DatasetMember]:
    """The (sample, label) rows of ``version``: the same rows whenever it is read."""
    return DatasetMember.objects.filter(project_id=version.project_id, valid_from__lte=version.version).filter(
        Q(valid_to__isnull=True) | Q(valid_to__gt=version.version)
    )


def rows_at(*, version: DatasetVersion) -> Iterator[dict[str, Any]]:
    """Stream ``{"external_id", "data", "label"}`` of a version, in sample order, without loading it whole."""
    queryset = members_at(version=version).order_by("sample_id").values("sample__external_id", "sample__data", "label")
    for row in queryset.iterator(chunk_size=CHUNK):
        yield {"external_id": row["sample__external_id"], "data": row["sample__data"], "label": row["label"]}


def diff_items(*, project_id: int, older: DatasetVersion, newer: DatasetVersion) -> list[dict[str, Any]]:
    """Item-level changes from ``older`` to ``newer``: ``{"external_id", "change", "old", "new"}``."""
    low, high = sorted((older.version, newer.version))
    moved = DatasetMember.objects.filter(project_id=project_id).filter(
        Q(valid_from__gt=low, valid_from__lte=high) | Q(valid_to__gt=low, valid_to__lte=high)
    )
    touched = set(moved.values_list("sample_id", flat=True))
    before = dict(members_at(version=older).filter(sample_id__in=touched).values_list("sample_id", "label"))
    after = dict(members_at(version=newer).filter(sample_id__in=touched).values_list("sample_id", "label"))
    external = dict(Sample.objects.filter(pk__in=touched).values_list("pk", "external_id"))
    out = []
    for sample_id in sorted(touched):
        old, new = before.get(sample_id), after.get(sample_id)
        if old == new:
            continue
        change = "added" if old is None else "removed" if new is None else "changed"
        out.append({"external_id": external[sample_id], "change": change, "old": old, "new": new})
    return out
