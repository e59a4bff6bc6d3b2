"""Final labels and their append-only trail.

On PostgreSQL new labels and their changes are written with one statement each from a JSON
document of positional arrays (bulk imports write thousands at a time, and bulk_create's model
instances and per-column arrays cost more than the rows); elsewhere with bulk_create.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from labeling import events
from labeling.models import Label, LabelChange, LabelMethod, Sample, SampleStatus

_IDS = "SELECT value::bigint FROM jsonb_array_elements_text(%(ids)s::jsonb)"
_LABELS_OF = (
    f"SELECT * FROM {Label._meta.db_table} WHERE sample_id IN (SELECT value::bigint FROM jsonb_array_elements_text(%s))"
)
_MARK_LABELED = (
    f"UPDATE {Sample._meta.db_table} SET status = %(labeled)s WHERE id IN ({_IDS}) AND status <> %(labeled)s"
)
_LABELS_INSERT = f"""
INSERT INTO {Label._meta.db_table} (sample_id, project_id, label, confidence, method, n_annotations, updated_at)
SELECT (r->>0)::bigint, %(project)s, r->>1, (r->>2)::float8, r->>3, (r->>4)::integer, %(now)s
FROM jsonb_array_elements(%(rows)s::jsonb) AS r
"""
# WITH ORDINALITY: the trail's ids are the order of the changes, as bulk_create would give them.
_CHANGES_INSERT = f"""
INSERT INTO {LabelChange._meta.db_table}
    (project_id, sample_id, old_label, new_label, method, actor_id, reason, created_at)
SELECT %(project)s, (r->>0)::bigint, r->>1, r->>2, r->>3, %(actor)s, r->>4, %(now)s
FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS e(r, n)
ORDER BY n
"""


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
    postgresql = connection.vendor == "postgresql"
    # On PostgreSQL the ids go as one JSON array: an IN list of thousands of placeholders costs
    # psycopg milliseconds per statement to take apart.
    ids = orjson.dumps(list(by_sample)).decode() if postgresql else ""
    with transaction.atomic():
        current = Label.objects.raw(_LABELS_OF, [ids]) if postgresql else Label.objects.filter(sample_id__in=by_sample)
        existing = {lab.sample_id: lab for lab in current}
        to_create: list[LabelDecision] = []
        to_update: list[Label] = []
        changes: list[tuple[int, str | None, LabelDecision]] = []
        for sample_id, d in by_sample.items():
            old = existing.get(sample_id)
            if old is None:
                to_create.append(d)
                changes.append((sample_id, None, d))
                continue
            if old.label == d.label and old.confidence == d.confidence and old.method == d.method:
                continue
            to_update.append(old)
            previous = old.label
            old.label, old.confidence, old.method, old.n_annotations, old.updated_at = (
                d.label,
                d.confidence,
                d.method,
                d.n_annotations,
                now,
            )
            if previous != d.label:
                changes.append((sample_id, previous, d))
        if postgresql:
            _insert_postgresql(project_id, to_create, changes, actor, now)
        else:
            _insert_portable(project_id, to_create, changes, actor, now)
        if to_update:
            Label.objects.bulk_update(
                to_update, ["label", "confidence", "method", "n_annotations", "updated_at"], batch_size=1000
            )
        if postgresql:
            execute_bound(_MARK_LABELED, {"ids": ids, "labeled": SampleStatus.LABELED.value})
        else:
            Sample.objects.filter(pk__in=list(by_sample)).exclude(status=SampleStatus.LABELED).update(
                status=SampleStatus.LABELED
            )
        if changes:
            events.emit_labels_finalized(project_id)
    return len(changes)


def _insert_portable(
    project_id: int,
    to_create: list[LabelDecision],
    changes: list[tuple[int, str | None, LabelDecision]],
    actor: User | None,
    now: datetime,
) -> None:
    Label.objects.bulk_create(
        [
            Label(
                sample_id=d.sample_id,
                project_id=project_id,
                label=d.label,
                confidence=d.confidence,
                method=d.method,
                n_annotations=d.n_annotations,
                updated_at=now,
            )
            for d in to_create
        ],
        batch_size=2000,
    )
    LabelChange.objects.bulk_create(
        [
            LabelChange(
                project_id=project_id,
                sample_id=sample_id,
                old_label=old_label,
                new_label=d.label,
                method=d.method,
                actor=actor,
                reason=d.reason,
                created_at=now,
            )
            for sample_id, old_label, d in changes
        ],
        batch_size=2000,
    )


def _insert_postgresql(
    project_id: int,
    to_create: list[LabelDecision],
    changes: list[tuple[int, str | None, LabelDecision]],
    actor: User | None,
    now: datetime,
) -> None:
    common = {"project": project_id, "now": now}
    if to_create:
        rows = [(d.sample_id, d.label, d.confidence, d.method, d.n_annotations) for d in to_create]
        execute_bound(_LABELS_INSERT, {**common, "rows": orjson.dumps(rows).decode()})
    if changes:
        trail = [(sample_id, old_label, d.label, d.method, d.reason) for sample_id, old_label, d in changes]
        actor_id = actor.pk if actor is not None else None
        execute_bound(_CHANGES_INSERT, {**common, "actor": actor_id, "rows": orjson.dumps(trail).decode()})


def execute_bound(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` on PostgreSQL with its parameters sent apart from the text (server-side binding)
    and return its rows, if any. Django's cursors inline parameters into the SQL, which for a JSON
    document of megabytes means escaping it in Python and lexing it again in PostgreSQL. Never
    prepared, so that it works behind transaction-pooling connection poolers."""
    import psycopg  # PostgreSQL only: the quick start on SQLite does not need the driver

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=False)
        return cursor.fetchall() if cursor.description is not None else []
