"""Training-set versions: cutting them from the current labels, reading any version, diffs.

A version is the set of DatasetMember rows valid at it: a member is valid in [valid_from,
valid_to). Cutting looks only at the LabelChange rows after the previous version's watermark, so
its cost and the rows it writes grow with the changes, not with the set.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from feedback import sethash
from feedback.models import DatasetMember, DatasetTag, DatasetVersion, ModelVersion, RunStatus, TrainingRun
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
        number = (latest.version if latest else 0) + 1
        if connection.vendor == "postgresql":
            added, changed, removed, value = _apply_changes_postgresql(project_id, watermark, top, number, latest)
        else:
            touched = sorted(set(changes.filter(id__lte=top).values_list("sample_id", flat=True)))
            added, changed, removed, value = _apply_changes(project_id, touched, number, latest)
        if not (added or changed or removed) and latest is not None:
            return CutResult(latest, created=False, seen_change_id=top)
        size = (latest.size if latest else 0) + added - removed
        version = _create(project_id, latest, number, value, size, (added, changed, removed), trigger, actor, top)
    return CutResult(version, created=True, seen_change_id=top)


# Each sample touched by the changes in (watermark, top], with its external id, its current final
# label (or null) and its open member (or nulls): the whole cut reads one of these two queries.
_TOUCHED_FROM = f"""
SELECT t.sample_id, s.external_id, l.label, m.id, m.label
FROM (SELECT DISTINCT sample_id FROM {LabelChange._meta.db_table}
      WHERE project_id = %s AND id > %s AND id <= %s) t
"""
# Few changes: one index probe per touched sample. Each lookup is a LATERAL with OFFSET 0 (not
# flattened into a join) and sequential scans are off while it is planned: joined plainly,
# PostgreSQL hash-joins a 10,000-sample change against a scan of the whole sample table (O(set)
# pages, 0.4-1.8 s on 1,000,000 samples), and a member table too new to have statistics gets a
# sequential scan per probe, which the cut's own inserts make quadratic.
_TOUCHED_PROBED = (
    _TOUCHED_FROM
    + f"""
CROSS JOIN LATERAL (SELECT external_id FROM {Sample._meta.db_table} WHERE id = t.sample_id OFFSET 0) s
LEFT JOIN LATERAL (SELECT label FROM {Label._meta.db_table} WHERE sample_id = t.sample_id OFFSET 0) l ON true
LEFT JOIN LATERAL (
    SELECT id, label FROM {DatasetMember._meta.db_table} WHERE sample_id = t.sample_id AND valid_to IS NULL OFFSET 0
) m ON true
ORDER BY t.sample_id
"""
)
# Many changes (a first cut, a bulk import): joined, the planner's hash joins read each table once.
_TOUCHED_JOINED = (
    _TOUCHED_FROM
    + f"""
JOIN {Sample._meta.db_table} s ON s.id = t.sample_id
LEFT JOIN {Label._meta.db_table} l ON l.sample_id = t.sample_id
LEFT JOIN {DatasetMember._meta.db_table} m ON m.sample_id = t.sample_id AND m.valid_to IS NULL
ORDER BY t.sample_id
"""
)
PROBE_MAX_CHANGES = 100_000
_CLOSE = f"UPDATE {DatasetMember._meta.db_table} SET valid_to = %s WHERE id = ANY(%s)"
_OPEN = f"""
INSERT INTO {DatasetMember._meta.db_table} (project_id, sample_id, label, valid_from)
SELECT %s, r.sample_id, r.label, %s FROM unnest(%s::bigint[], %s::text[]) AS r(sample_id, label)
"""
CUT_BATCH = 50_000


def _few_changes(project_id: int, watermark: int, top: int) -> bool:
    """At most PROBE_MAX_CHANGES changes of the project in (watermark, top]: ids are global, so
    the range alone is only an upper bound. A bounded count over the (project, id) index."""
    if top - watermark <= PROBE_MAX_CHANGES:
        return True
    window = LabelChange.objects.filter(project_id=project_id, id__gt=watermark, id__lte=top)
    return window.values("id")[: PROBE_MAX_CHANGES + 1].count() <= PROBE_MAX_CHANGES


def _apply_changes_postgresql(
    project_id: int, watermark: int, top: int, number: int, latest: DatasetVersion | None
) -> tuple[int, int, int, int]:
    """The cut on PostgreSQL: one read of the touched samples (server-side cursor, batches of
    CUT_BATCH), and per batch one UPDATE closing members and one INSERT opening them, with the
    ids as arrays (no placeholder per row, no model instances). Same result as _apply_changes."""
    value = sethash.from_hex(latest.hash) if latest else sethash.EMPTY
    added = changed = removed = 0
    reader = connection.chunked_cursor()
    try:
        params = [project_id, watermark, top]
        if _few_changes(project_id, watermark, top):
            with connection.cursor() as setting:
                setting.execute("SET LOCAL enable_seqscan = off")
            reader.execute(_TOUCHED_PROBED, params)  # the plan is fixed when the cursor opens
            with connection.cursor() as setting:
                setting.execute("SET LOCAL enable_seqscan TO DEFAULT")
        else:
            reader.execute(_TOUCHED_JOINED, params)
        while rows := reader.fetchmany(CUT_BATCH):
            close: list[int] = []
            new_ids: list[int] = []
            new_labels: list[str] = []
            plus: list[tuple[str, str]] = []
            minus: list[tuple[str, str]] = []
            for sample_id, external_id, label, member_id, member_label in rows:
                if member_id is not None and member_label == label:
                    continue
                if member_id is not None:
                    close.append(member_id)
                    minus.append((external_id, member_label))
                if label is not None:
                    new_ids.append(sample_id)
                    new_labels.append(label)
                    plus.append((external_id, label))
                if member_id is None:
                    added += 1
                elif label is None:
                    removed += 1
                else:
                    changed += 1
            with connection.cursor() as writer:
                if close:
                    writer.execute(_CLOSE, [number, close])
                if new_ids:
                    writer.execute(_OPEN, [project_id, number, new_ids, new_labels])
            value = sethash.combine(value, added=plus, removed=minus)
    finally:
        reader.close()
    return added, changed, removed, value


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


class VersionPruned(Exception):
    """The version's members were pruned: its row (hash, diff figures, lineage) is all that is left."""

    def __init__(self, version: DatasetVersion) -> None:
        super().__init__(f"dataset version {version.version} was pruned on {version.pruned_at:%Y-%m-%d}")
        self.version = version


def members_at(*, version: DatasetVersion) -> QuerySet[DatasetMember]:
    """The (sample, label) rows of ``version``: the same rows whenever it is read."""
    return DatasetMember.objects.filter(project_id=version.project_id, valid_from__lte=version.version).filter(
        Q(valid_to__isnull=True) | Q(valid_to__gt=version.version)
    )


def _members_sql(vendor: str) -> str:
    data = "s.data::text" if vendor == "postgresql" else "s.data"
    return (
        f"SELECT m.sample_id, s.external_id, {data}, m.label "
        f"FROM {DatasetMember._meta.db_table} m JOIN {Sample._meta.db_table} s ON s.id = m.sample_id "
        "WHERE m.project_id = %s AND m.valid_from <= %s AND (m.valid_to IS NULL OR m.valid_to > %s) "
        "ORDER BY m.sample_id"
    )


RawRow = tuple[int, str, str | None, str]  # (sample_id, external_id, data as JSON text, label)


def member_batches(*, version: DatasetVersion, batch: int = CHUNK) -> Iterator[list[RawRow]]:
    """The rows of ``version`` in sample order, ``batch`` at a time, with ``data`` as JSON text.

    One query; on PostgreSQL through a server-side cursor inside a transaction (the rows stream
    from the server as they are read: no whole set in memory, on either side), elsewhere through
    the portable cursor. Raises VersionPruned for a pruned version. The caller must consume or
    close the iterator before using the connection for anything else.
    """
    if version.pruned_at is not None:
        raise VersionPruned(version)
    params = [version.project_id, version.version, version.version]
    sql = _members_sql(connection.vendor)
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(batch):
                yield [(r[0], r[1], r[2], r[3]) for r in rows]
        return
    yield from _server_side(sql, params, batch)


def _server_side(sql: str, params: list[Any], batch: int) -> Iterator[list[tuple[Any, ...]]]:
    """``sql``'s rows through a server-side cursor, ``batch`` at a time, in a transaction. The
    cursor is planned for reading every row (PostgreSQL's default plans a cursor for its first
    tenth, which picks nested loops over the whole version)."""
    with transaction.atomic():
        with connection.cursor() as setting:
            setting.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        cursor = connection.chunked_cursor()
        try:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(batch):
                yield rows
        finally:
            cursor.close()


def member_select(
    *, version: DatasetVersion, select: str, params: list[Any], batch: int = CHUNK
) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of rows of ``select`` (SQL expressions over ``m``, the member, and ``s``, its sample;
    any value from outside goes in ``params``) over the rows of ``version``, in sample order,
    through a server-side cursor. PostgreSQL only. Raises VersionPruned for a pruned version."""
    if version.pruned_at is not None:
        raise VersionPruned(version)
    sql = (
        f"SELECT {select} "
        f"FROM {DatasetMember._meta.db_table} m JOIN {Sample._meta.db_table} s ON s.id = m.sample_id "
        "WHERE m.project_id = %s AND m.valid_from <= %s AND (m.valid_to IS NULL OR m.valid_to > %s) "
        "ORDER BY m.sample_id"
    )
    yield from _server_side(sql, [*params, version.project_id, version.version, version.version], batch)


def member_copy(
    *, version: DatasetVersion, select: str, params: list[Any], csv: bool = False
) -> Iterator[bytes | memoryview]:
    """The rows of ``select`` (SQL expressions over ``m``, the member, and ``s``, its sample; any
    value from outside goes in ``params``, bound by psycopg) over the rows of ``version``, in
    sample order, as PostgreSQL's ``COPY ... TO STDOUT`` sends them: one encoded line per row,
    text format (backslashes doubled) or CSV. PostgreSQL only; the exports let the server build
    their lines with it (one statement, streamed as it runs, no transaction held open).
    Raises VersionPruned for a pruned version."""
    if version.pruned_at is not None:
        raise VersionPruned(version)
    query = (
        f"COPY (SELECT {select} "
        f"FROM {DatasetMember._meta.db_table} m JOIN {Sample._meta.db_table} s ON s.id = m.sample_id "
        "WHERE m.project_id = %s AND m.valid_from <= %s AND (m.valid_to IS NULL OR m.valid_to > %s) "
        "ORDER BY m.sample_id) TO STDOUT" + (" WITH (FORMAT csv)" if csv else "")
    )
    with connection.cursor() as wrapper:
        raw = wrapper.cursor  # psycopg's own cursor: COPY is not in the DB-API
        with raw.copy(query, [*params, version.project_id, version.version, version.version]) as copy:
            yield from copy


def rows_at(*, version: DatasetVersion) -> Iterator[dict[str, Any]]:
    """Stream ``{"sample_id", "external_id", "data", "label"}`` of a version, in sample order,
    without loading it whole. Raises VersionPruned for a pruned version."""
    loads = orjson.loads
    for rows in member_batches(version=version):
        for sample_id, external_id, data, label in rows:
            yield {
                "sample_id": sample_id,
                "external_id": external_id,
                "data": loads(data) if data else {},
                "label": label,
            }


def diff_items(*, project_id: int, older: DatasetVersion, newer: DatasetVersion) -> list[dict[str, Any]]:
    """Item-level changes from ``older`` to ``newer``: ``{"external_id", "change", "old", "new"}``.
    Raises VersionPruned when either was pruned."""
    for version in (older, newer):
        if version.pruned_at is not None:
            raise VersionPruned(version)
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


# ---------------------------------------------------------------- tags and pruning


class TagConflict(Exception):
    """The tag name is already used in the project (names are unique per project)."""


MAX_TAG_LENGTH = 100


def dataset_tag_add(*, project_id: int, version: int, name: str, actor: User | None = None) -> DatasetTag:
    """Tag a version; a tagged version is never pruned. Raises DatasetVersion.DoesNotExist,
    VersionPruned (nothing left to protect) and TagConflict (the name is taken in the project).
    Locks the version row, so a prune running at the same time sees the tag or prunes first."""
    with transaction.atomic():
        target = DatasetVersion.objects.select_for_update().get(project_id=project_id, version=version)
        if target.pruned_at is not None:
            raise VersionPruned(target)
        existing = DatasetTag.objects.filter(project_id=project_id, name=name).select_related("version").first()
        if existing is not None:
            if existing.version_id == target.pk:
                return existing
            raise TagConflict(f"tag {name!r} is already on version {existing.version.version}")
        try:
            with transaction.atomic():
                return DatasetTag.objects.create(project_id=project_id, version=target, name=name, created_by=actor)
        except IntegrityError:
            raise TagConflict(f"tag {name!r} is already used in this project") from None


def dataset_tag_remove(*, project_id: int, version: int, name: str) -> bool:
    """Remove tag ``name`` from ``version``; False when the version has no such tag."""
    deleted, _ = DatasetTag.objects.filter(project_id=project_id, version__version=version, name=name).delete()
    return bool(deleted)


@dataclass(frozen=True)
class PruneResult:
    pruned: list[int]  # version numbers pruned now
    members_deleted: int
    kept: dict[int, str]  # versions old enough that were kept, and why
    retention_days: int | None


def protected_versions(*, project_id: int) -> dict[int, str]:
    """Version numbers that must keep their members, with the reason: the latest (new versions
    are cut from it), tagged ones, every version a model was trained on or a run is training,
    and the drift reference."""
    from labeling.project_settings import ProjectSettings

    keep: dict[int, str] = {}
    latest = DatasetVersion.objects.filter(project_id=project_id).aggregate(top=Max("version"))["top"]
    if latest is not None:
        keep[latest] = "latest version"
    stored = Project.objects.filter(pk=project_id).values_list("settings", flat=True).first() or {}
    reference = ProjectSettings.of(stored).drift.get("reference_version")
    if reference is not None:
        keep.setdefault(int(reference), "drift reference version")
    for number in ModelVersion.objects.filter(project_id=project_id).values_list("dataset_version__version", flat=True):
        keep.setdefault(number, "a model version was trained on it")
    active = TrainingRun.objects.filter(project_id=project_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
    for number in active.values_list("dataset_version__version", flat=True):
        keep.setdefault(number, "a training run is using it")
    for number, name in DatasetTag.objects.filter(project_id=project_id).values_list("version__version", "name"):
        keep[number] = f"tagged {name!r}"
    return keep


def dataset_versions_prune(
    *,
    project_id: int,
    retention_days: int | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Prune the untagged versions older than ``retention_days`` (the project's
    datasets.retention_days when None; nothing when both are None), except protected_versions.

    A pruned version keeps its row (hash, diff figures, lineage) and loses its members: member
    rows that no surviving version needs are deleted, i.e. rows whose [valid_from, valid_to)
    holds no surviving version number. Locks the project row (serialized with cuts and prunes).
    """
    from labeling.project_settings import ProjectSettings

    moment = now or timezone.now()
    with transaction.atomic():
        stored = Project.objects.select_for_update().filter(pk=project_id).values_list("settings", flat=True).first()
        if stored is None:
            return PruneResult([], 0, {}, retention_days)
        days = retention_days if retention_days is not None else ProjectSettings.of(stored).datasets["retention_days"]
        if days is None:
            return PruneResult([], 0, {}, None)
        old = DatasetVersion.objects.filter(
            project_id=project_id, pruned_at__isnull=True, created_at__lt=moment - timedelta(days=days)
        )
        old_numbers = list(old.values_list("version", flat=True).order_by("version"))
        protected = protected_versions(project_id=project_id)
        kept = {n: protected[n] for n in old_numbers if n in protected}
        doomed = [n for n in old_numbers if n not in protected]
        if dry_run or not doomed:
            return PruneResult(doomed if dry_run else [], 0, kept, days)
        surviving = set(
            DatasetVersion.objects.filter(project_id=project_id, pruned_at__isnull=True).values_list(
                "version", flat=True
            )
        ) - set(doomed)
        deleted = _delete_unneeded_members(project_id, sorted(surviving), set(doomed))
        DatasetVersion.objects.filter(project_id=project_id, version__in=doomed).update(pruned_at=moment)
    return PruneResult(doomed, deleted, kept, days)


def _delete_unneeded_members(project_id: int, surviving: list[int], doomed: set[int]) -> int:
    """Delete the members lying wholly between two consecutive surviving versions (one range per
    gap that holds a version pruned now; a member is needed by version v iff from <= v < to)."""
    bounds = [0, *surviving]
    gaps = Q()
    for low, high in itertools.pairwise(bounds):
        if any(low < n < high for n in doomed):
            gaps |= Q(valid_from__gt=low, valid_to__lte=high)
    if not gaps:
        return 0
    deleted, _ = DatasetMember.objects.filter(project_id=project_id, valid_to__isnull=False).filter(gaps).delete()
    return deleted
