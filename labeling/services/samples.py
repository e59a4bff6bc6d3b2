"""Adding samples to a project in bulk: the sample rows, their queue tasks, and known labels.

On PostgreSQL the samples and their tasks go in with one ``INSERT ... ON CONFLICT DO NOTHING``
statement per chunk, fed by one JSON document: no model instances, no per-column arrays (psycopg
builds those in Python), and no look-up of known external_ids beforehand, because the unique index
answers that while inserting. Elsewhere (SQLite, the quick start) it is bulk_create.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from labeling.models import LabelMethod, Project, Reason, Sample, SampleStatus, Task, TaskKind, TaskStatus
from labeling.services.labels import LabelDecision, execute_bound, labels_set

# Rows per statement: bounds the JSON document a backend holds (about 0.5 KB per sample), and
# keeps SQLite's look-up of known external_ids under its limit of 32766 bound parameters.
CHUNK = 5000

_SEQUENCE = "SELECT pg_get_serial_sequence(%s, 'id')"
_RESERVE_IDS = "SELECT nextval(%s::regclass) FROM generate_series(1, %s)"
_sequences: dict[str, str] = {}  # database alias -> the sample id sequence (looked up once per process)
# The rows come as one JSON array of [id, external_id, data, observed_at, status, suggestion,
# reason, priority] arrays: jsonb_array_elements over positional arrays costs PostgreSQL about half
# what json_to_recordset does (no per-record hash of keys), and ``data`` is parsed once. They are
# inserted in external_id order, so that two requests sharing external_ids take the unique index's
# entries in the same order and wait for each other instead of deadlocking; the ids were reserved
# in input order. Tasks are inserted in sample id order, so their ids (the queue's tie-break)
# follow the input too. RETURNING gives the ids that were new.
_INSERT = f"""
WITH src AS MATERIALIZED (
    SELECT (r->>0)::bigint AS id, r->>1 AS external_id, r->2 AS data, (r->>3)::timestamptz AS observed_at,
        (r->>4)::smallint AS status, NULLIF(r->5, 'null') AS suggestion, r->>6 AS reason, (r->>7)::float8 AS priority
    FROM jsonb_array_elements(%(rows)s::jsonb) AS r
), created AS (
    INSERT INTO {Sample._meta.db_table} (id, project_id, external_id, data, observed_at, created_at, status, suggestion)
    SELECT id, %(project)s, external_id, data, observed_at, %(now)s, status, suggestion FROM src
    ON CONFLICT (project_id, external_id) DO NOTHING
    RETURNING id
), queued AS (
    INSERT INTO {Task._meta.db_table}
        (project_id, sample_id, kind, reason, priority, status, overlap, n_answers, n_leased, created_at)
    SELECT %(project)s, src.id, %(kind)s, src.reason, src.priority, %(pending)s, %(overlap)s, 0, 0, %(now)s
    FROM src JOIN created ON created.id = src.id
    WHERE src.status = %(queued)s
    ORDER BY src.id
)
SELECT id FROM created
"""


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
    task each with their priority and reason; labeled items get a final label (method import, via
    labels_set, which emits labels_finalized on commit). One transaction. On PostgreSQL a
    concurrent request storing the same external_id makes this one wait for it, and the id then
    counts as a duplicate; elsewhere the concurrent insert raises IntegrityError and the caller
    retries, the retry then seeing a duplicate.
    """
    now = timezone.now()
    seen: set[str] = set()
    fresh: list[tuple[int, NewSample]] = []
    for index, item in enumerate(items):
        if item.external_id not in seen:
            seen.add(item.external_id)
            fresh.append((index, item))
    with transaction.atomic():
        if connection.vendor == "postgresql":
            created = _insert_postgresql(project, [item for _, item in fresh], now)
        else:
            created = _insert_portable(project, [item for _, item in fresh], now)
        decisions = [
            LabelDecision(
                sample_id=sample_id, label=item.label, confidence=1.0, method=LabelMethod.IMPORT, n_annotations=0
            )
            for sample_id, (_, item) in zip(created, fresh, strict=True)
            if sample_id is not None and item.label is not None
        ]
        labels_set(project_id=project.pk, decisions=decisions, actor=actor)
    ids: list[int | None] = [None] * len(items)
    for sample_id, (index, _) in zip(created, fresh, strict=True):
        ids[index] = sample_id
    n_created = len(created) - created.count(None)
    return AddedSamples(sample_ids=ids, n_created=n_created, n_duplicates=len(items) - n_created)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(rows: list[tuple[Any, ...]]) -> str:
    try:
        return orjson.dumps(rows).decode()
    except TypeError:
        # orjson stops at integers beyond 64 bits, which Python's json (what JSONField uses) writes.
        return json.dumps(rows, default=_json_default)


def _aware(moment: datetime | None) -> datetime | None:
    """What DateTimeField would store: a naive time is taken in the default time zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return timezone.make_aware(moment, timezone.get_default_timezone())


def _insert_postgresql(project: Project, items: list[NewSample], now: datetime) -> list[int | None]:
    """Per item, its new sample id, or None when the project already had its external_id."""
    created: list[int | None] = []
    with connection.cursor() as cursor:
        sequence = _sequences.get(connection.alias)
        if sequence is None:
            cursor.execute(_SEQUENCE, [Sample._meta.db_table])
            sequence = _sequences[connection.alias] = cursor.fetchone()[0]
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            cursor.execute(_RESERVE_IDS, [sequence, len(chunk)])
            ids = [row[0] for row in cursor.fetchall()]
            queued, labeled = SampleStatus.QUEUED.value, SampleStatus.LABELED.value
            rows = [
                (
                    sample_id,
                    item.external_id,
                    item.data,
                    _aware(item.observed_at),
                    queued if item.label is None else labeled,
                    item.suggestion,
                    item.reason,
                    item.priority,
                )
                for sample_id, item in zip(ids, chunk, strict=True)
            ]
            rows.sort(key=itemgetter(1))
            params: dict[str, Any] = {
                "rows": _dumps(rows),
                "project": project.pk,
                "now": now,
                "kind": TaskKind.LABEL.value,
                "pending": TaskStatus.PENDING.value,
                "overlap": project.overlap,
                "queued": SampleStatus.QUEUED.value,
            }
            new = {sample_id for (sample_id,) in execute_bound(_INSERT, params)}
            created.extend(sample_id if sample_id in new else None for sample_id in ids)
    return created


def _insert_portable(project: Project, items: list[NewSample], now: datetime) -> list[int | None]:
    known: set[str] = set()
    for start in range(0, len(items), CHUNK):
        wanted = [item.external_id for item in items[start : start + CHUNK]]
        known.update(
            Sample.objects.filter(project=project, external_id__in=wanted).values_list("external_id", flat=True)
        )
    rows: list[Sample | None] = [
        None
        if item.external_id in known
        else Sample(
            project=project,
            external_id=item.external_id,
            data=item.data,
            observed_at=item.observed_at,
            created_at=now,
            status=SampleStatus.LABELED if item.label is not None else SampleStatus.QUEUED,
            suggestion=item.suggestion,
        )
        for item in items
    ]
    Sample.objects.bulk_create([row for row in rows if row is not None], batch_size=2000)
    tasks = [
        Task(
            project=project,
            sample_id=row.pk,
            reason=item.reason,
            priority=item.priority,
            overlap=project.overlap,
            created_at=now,
        )
        for row, item in zip(rows, items, strict=True)
        if row is not None and item.label is None
    ]
    Task.objects.bulk_create(tasks, batch_size=2000)
    return [row.pk if row is not None else None for row in rows]
