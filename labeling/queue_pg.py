"""The queue's hot path on PostgreSQL: a hand-out and an answer in one statement each.

The ORM versions in ``labeling.queue`` take a dozen round trips per operation; these take one
(plus the transaction's BEGIN and COMMIT), which is what keeps next -> answer within a few
milliseconds under many annotators. They implement exactly the ORM versions' rules, and fall back
to them for the rare cases they do not handle (a candidate whose only free slot was an expired
lease that turned out to be taken, and every conflict), so the rules live in one place:
``labeling.queue``'s docstrings.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

# The highest-priority pending task of the given kinds that has a free slot (or an expired lease
# that may free one) and that this user has neither answered, skipped nor holds; locked, skipping
# rows other hand-outs hold. Its live, unexpired leases held by others are recounted, because
# n_leased does not go down when a lease merely expires, and the expired ones are marked so. If a
# slot is free, the user's lease is inserted (or their own expired one renewed) and the task's
# counters set. The sub-statements touch disjoint lease rows (others' expired, others' live read
# from the snapshot, the user's own), as PostgreSQL requires of one statement.
NEXT = """
WITH pick AS (
    SELECT t.id, t.sample_id, t.overlap - t.n_answers AS slots
    FROM labeling_task t
    WHERE t.project_id = %(project)s AND t.status = 0 AND t.kind = ANY(%(kinds)s)
      AND (t.n_leased < t.overlap - t.n_answers OR t.lease_expiry <= %(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM labeling_lease l
          WHERE l.task_id = t.id AND l.user_id = %(user)s
            AND (l.status IN (1, 2) OR (l.status = 0 AND l.expires_at > %(now)s)))
    ORDER BY t.priority DESC, t.id
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
), others AS (
    SELECT pick.id, pick.sample_id, pick.slots, count(l.id) AS held, min(l.expires_at) AS first_expiry
    FROM pick LEFT JOIN labeling_lease l
      ON l.task_id = pick.id AND l.status = 0 AND l.expires_at > %(now)s AND l.user_id <> %(user)s
    GROUP BY pick.id, pick.sample_id, pick.slots
), expired AS (
    UPDATE labeling_lease SET status = 3
    WHERE task_id = (SELECT id FROM pick) AND status = 0 AND expires_at <= %(now)s AND user_id <> %(user)s
    RETURNING id
), free AS (
    SELECT * FROM others WHERE held < slots
), leased AS (
    INSERT INTO labeling_lease (task_id, user_id, status, leased_at, expires_at)
    SELECT id, %(user)s, 0, %(now)s, %(expires)s FROM free
    ON CONFLICT (task_id, user_id) DO UPDATE
        SET status = 0, leased_at = EXCLUDED.leased_at, expires_at = EXCLUDED.expires_at
    RETURNING task_id
), bumped AS (
    UPDATE labeling_task t
    SET n_leased = free.held + 1, lease_expiry = LEAST(COALESCE(free.first_expiry, %(expires)s), %(expires)s)
    FROM free WHERE t.id = free.id
    RETURNING t.id, t.reason, t.kind, t.priority, t.overlap, t.n_answers, t.created_at
)
SELECT others.id, bumped.id IS NOT NULL, bumped.reason, bumped.kind, bumped.priority, bumped.overlap,
       bumped.n_answers, bumped.created_at, s.id, s.external_id, s.data, s.suggestion, s.observed_at, s.status
FROM others
LEFT JOIN bumped ON bumped.id = others.id
LEFT JOIN labeling_sample s ON s.id = others.sample_id
"""

# The answer: the caller has locked the task row. Marks the user's live, unexpired lease answered,
# stores the annotation, counts it on the task (done at ``overlap`` answers) and recomputes the
# earliest expiry among the other live leases. Nothing happens when there is no such lease.
ANSWER = """
WITH lease AS (
    UPDATE labeling_lease SET status = 1
    WHERE task_id = %(task)s AND user_id = %(user)s AND status = 0 AND expires_at > %(now)s
    RETURNING id
), stored AS (
    INSERT INTO labeling_annotation (project_id, task_id, sample_id, user_id, label, duration_ms, created_at)
    SELECT %(project)s, %(task)s, %(sample)s, %(user)s, %(label)s, %(duration)s, %(now)s FROM lease
    RETURNING id
), counted AS (
    UPDATE labeling_task t
    SET n_answers = t.n_answers + 1,
        n_leased = GREATEST(t.n_leased - 1, 0),
        status = CASE WHEN t.n_answers + 1 >= t.overlap THEN 1 ELSE 0 END,
        lease_expiry = (SELECT min(o.expires_at) FROM labeling_lease o
                        WHERE o.task_id = t.id AND o.status = 0 AND o.user_id <> %(user)s)
    WHERE t.id = %(task)s AND EXISTS (SELECT 1 FROM lease)
    RETURNING t.status
)
SELECT (SELECT id FROM stored), (SELECT status FROM counted)
"""

LOCK_TASK = "SELECT sample_id, project_id, status FROM labeling_task WHERE id = %s FOR UPDATE"


@dataclass(frozen=True)
class Picked:
    task_id: int
    leased: bool
    fields: dict[str, Any]  # of the task, when leased
    sample: dict[str, Any]  # of the sample, when leased


def lease_next(
    *, project_id: int, user_id: int, kinds: Sequence[str], now: datetime, expires_at: datetime
) -> Picked | None:
    """Run NEXT; None when no candidate row was found (call inside a transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(
            NEXT, {"project": project_id, "user": user_id, "kinds": list(kinds), "now": now, "expires": expires_at}
        )
        row = cursor.fetchone()
    if row is None:
        return None
    task_id, leased, reason, kind, priority, overlap, n_answers, created_at = row[:8]
    sample_id, external_id, data, suggestion, observed_at, sample_status = row[8:]
    return Picked(
        task_id=task_id,
        leased=bool(leased),
        fields={
            "id": task_id,
            "project_id": project_id,
            "sample_id": sample_id,
            "reason": reason,
            "kind": kind,
            "priority": priority,
            "overlap": overlap,
            "n_answers": n_answers,
            "created_at": created_at,
        },
        sample={
            "id": sample_id,
            "project_id": project_id,
            "external_id": external_id,
            "data": data,
            "suggestion": suggestion,
            "observed_at": observed_at,
            "status": sample_status,
        },
    )


def lock_task(task_id: int) -> tuple[int, int, int] | None:
    """Lock the task row: (sample_id, project_id, status), or None when there is no such task."""
    with connection.cursor() as cursor:
        cursor.execute(LOCK_TASK, [task_id])
        row = cursor.fetchone()
    return (row[0], row[1], row[2]) if row else None


def answer(
    *, task_id: int, project_id: int, sample_id: int, user_id: int, label: str, duration_ms: int | None, now: datetime
) -> tuple[int | None, int | None]:
    """Run ANSWER with the task row locked: (annotation id, task status), (None, None) when the
    user holds no live lease on the task."""
    with connection.cursor() as cursor:
        cursor.execute(
            ANSWER,
            {
                "task": task_id,
                "project": project_id,
                "sample": sample_id,
                "user": user_id,
                "label": label,
                "duration": duration_ms,
                "now": now,
            },
        )
        row = cursor.fetchone()
    assert row is not None
    return row[0], row[1]
