"""The queue's hot path on PostgreSQL: a hand-out and an answer in one statement each.

Each statement also does the access check (the caller's role in the project, from its user id),
reads the project's settings it needs, and, for an answer that completes an overlap-1 task of a
project deciding by plain majority, writes the final label with its trail. Run outside a
transaction it is one round trip and one commit; the ORM versions in ``labeling.queue`` take a
dozen. They implement exactly the ORM versions' rules, whose docstrings (``labeling.queue``) are
the reference, and hand back to them the rare cases they do not handle: a candidate whose only
free slot was an expired lease that turned out to be taken, an answer that completes a task whose
consensus needs ``task_finalize`` (overlap > 1, Dawid-Skene, a review threshold), and every
conflict (the ORM path says why).

The statements are prepared once per connection (PostgreSQL then plans their dozen CTEs once,
not per request) and executed through libpq directly (``run``): psycopg's cursor re-parses a
statement longer than 4 KB on every call to find its placeholders and dumps each parameter with
per-call type lookups, which cost about as much Python as the rest of a fast-path request. Set
``LABELLOOP_PREPARE=0`` behind a pooler that cannot keep prepared statements (PgBouncer before
1.21 in transaction mode): the statements are then sent unnamed, planned each time.
"""

import dataclasses
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

PREPARE = os.environ.get("LABELLOOP_PREPARE", "1").strip().lower() not in {"0", "false", "no", "off"}

# The caller's role in the project (NULL for a non-member, 'staff' for staff), and the settings the
# hand-out needs. %(roles)s are the roles that may take tasks, %(review_roles)s those also handed
# review tasks (staff always are).
_WHO = """
who AS (
    SELECT p.id, p.labels, p.settings, p.gold_rate, CASE WHEN %(staff)s::boolean THEN 'staff' ELSE m.role END AS role
    FROM labeling_project p
    LEFT JOIN labeling_membership m ON m.project_id = p.id AND m.user_id = %(user)s
    WHERE p.id = {project}
), allowed AS (
    SELECT * FROM who WHERE role = 'staff' OR role = ANY(%(roles)s::text[])
)"""

# The candidate of one kind: the highest-priority pending task of that kind (through its partial
# index) with a free slot, or an expired lease that may free one, that this user has neither
# answered, skipped nor holds; locked, skipping rows other hand-outs hold.
_ELIGIBLE = """
    FROM labeling_task t
    WHERE t.project_id = %(project)s AND t.status = 0 AND t.kind = '{kind}' AND ({when})
      AND (t.n_leased < t.overlap - t.n_answers OR t.lease_expiry <= %(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM labeling_lease l
          WHERE l.task_id = t.id AND l.user_id = %(user)s
            AND (l.status IN (1, 2) OR (l.status = 0 AND l.expires_at > %(now)s)))"""
_CANDIDATE = (
    """
{name} AS (
    SELECT t.id, t.sample_id, t.overlap - t.n_answers AS slots, t.n_leased, t.lease_expiry, {rank} AS rank"""
    + _ELIGIBLE
    + """
    ORDER BY t.priority DESC, t.id
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
)"""
)
# Whether a candidate exists that the hand-out skipped because another transaction held its row
# (read without locking): then the queue is busy, not empty, and the caller tries again. A
# statement of its own, run only when NEXT found nothing: inside NEXT its plan cost every
# hand-out the setting up of two more scans.
PROBE = (
    """SELECT EXISTS (SELECT 1"""
    + _ELIGIBLE.format(kind="label", when="true")
    + """) OR (%(reviews)s::boolean AND EXISTS (SELECT 1"""
    + _ELIGIBLE.format(kind="review", when="true")
    + "))"
)

# The hand-out. A gold task comes first when the draw (gold_rate) says so and label work remains
# for this user, then review tasks (reviewers, managers, staff), then label tasks. The pick's
# counters (n_leased, lease_expiry) are read from the row as locked, never from the statement's
# snapshot, which may predate a transaction that changed the task's leases and committed just
# before the lock: while no lease on the pick has expired (lease_expiry in the future) n_leased is
# exact, the slot is free, and the user's lease is inserted (or their own old one renewed) and
# counted. A pick with an expired lease is returned unleased: the ORM path locks it, releases what
# expired in statements of their own and recounts. One row always comes back: whether the project
# exists, the caller's role, and the leased task and sample (a column kept for PROBE's answer).
NEXT = (
    "WITH"
    + _WHO.format(project="%(project)s")
    + """, go AS (
    SELECT id,
        %(with_reviews)s::boolean AND (role = 'staff' OR role = ANY(%(review_roles)s::text[])) AS reviews,
        gold_rate > 0 AND random() < gold_rate AS gold_first,
        %(now)s::timestamptz + make_interval(
            secs => COALESCE((settings #>> '{queue,lease_seconds}')::int, %(lease_default)s::int)) AS expires,
        COALESCE((settings #>> '{queue,show_suggestion}')::boolean, %(show_default)s::boolean) AS show
    FROM allowed
),"""
    + _CANDIDATE.format(name="label_pick", rank=3, kind="label", when="EXISTS (SELECT 1 FROM go)")
    + ","
    + _CANDIDATE.format(name="review_pick", rank=2, kind="review", when="(SELECT reviews FROM go)")
    + ","
    + _CANDIDATE.format(
        name="gold_pick", rank=1, kind="gold", when="(SELECT gold_first FROM go) AND EXISTS (SELECT 1 FROM label_pick)"
    )
    + """, pick AS (
    SELECT * FROM (
        SELECT * FROM gold_pick UNION ALL SELECT * FROM review_pick UNION ALL SELECT * FROM label_pick
    ) c ORDER BY rank LIMIT 1
), free AS (
    SELECT pick.id, go.expires FROM pick, go
    WHERE (pick.lease_expiry IS NULL OR pick.lease_expiry > %(now)s) AND pick.n_leased < pick.slots
), leased AS (
    INSERT INTO labeling_lease (task_id, user_id, status, leased_at, expires_at)
    SELECT id, %(user)s, 0, %(now)s, expires FROM free
    ON CONFLICT (task_id, user_id) DO UPDATE
        SET status = 0, leased_at = EXCLUDED.leased_at, expires_at = EXCLUDED.expires_at
    RETURNING task_id
), bumped AS (
    UPDATE labeling_task t
    SET n_leased = t.n_leased + 1, lease_expiry = LEAST(COALESCE(t.lease_expiry, free.expires), free.expires)
    FROM free WHERE t.id = free.id AND EXISTS (SELECT 1 FROM leased)
    RETURNING t.id, t.reason, t.kind, t.priority, t.overlap, t.n_answers, t.created_at, t.sample_id
)
SELECT who.id IS NOT NULL, who.role, go.id IS NOT NULL, go.expires, go.show,
       false,
       pick.id, bumped.id IS NOT NULL, bumped.reason, bumped.kind, bumped.priority, bumped.overlap,
       bumped.n_answers, bumped.created_at,
       s.id, s.external_id, s.data, s.suggestion, s.observed_at, s.status
FROM (SELECT 1) AS one
LEFT JOIN who ON true
LEFT JOIN go ON true
LEFT JOIN pick ON true
LEFT JOIN bumped ON bumped.id = pick.id
LEFT JOIN labeling_sample s ON s.id = bumped.sample_id
"""
)

# The answer. The task row is locked first (the queue's lock order: task, then lease), and only
# once the caller's role allows it. Then, if the label is one of the project's, the task is
# pending and not a review task, and the answer does not complete a task that needs
# task_finalize: the user's live, unexpired lease is marked answered, the annotation stored and
# counted on the task (done at ``overlap`` answers; a gold task never is), and, when the answer
# completes an overlap-1 label task of a plain-majority project on a sample that is not gold, the
# final label written as
# labels_set writes it (the label, a LabelChange when the label changes, by the answering user
# for the reason consensus.task_finalize gives a one-answer label, the sample marked
# labeled). Nothing is written when any condition fails; the returned row says which.
# The task's lease_expiry is kept as it was while other leases remain (or cleared with the last):
# it may be earlier than the truth, never later, so a hand-out meeting it recounts the leases. It
# is not recomputed from the lease rows, because this statement's snapshot may predate a hand-out
# that committed while it waited for the task's lock.
ANSWER = (
    """WITH target AS (
    SELECT project_id FROM labeling_task WHERE id = %(task)s
),"""
    + _WHO.format(project="(SELECT project_id FROM target)")
    + """, task AS (
    SELECT t.id, t.project_id, t.sample_id, t.kind, t.status, t.overlap, t.n_answers
    FROM labeling_task t WHERE t.id = %(task)s AND EXISTS (SELECT 1 FROM allowed)
    FOR UPDATE
), go AS (
    SELECT task.*,
        task.kind = 'label' AND task.n_answers + 1 >= task.overlap AS completes,
        COALESCE(a.settings #>> '{consensus,method}', %(method_default)s::text) = 'majority'
            AND COALESCE((a.settings #>> '{consensus,review_below}')::float8, %(review_below_default)s::float8) <= 0
            AND task.overlap = 1
            AND NOT EXISTS (SELECT 1 FROM labeling_gold g WHERE g.sample_id = task.sample_id) AS fast
    FROM task, allowed a
    WHERE a.labels ? %(label)s::text AND task.status = 0 AND task.kind <> 'review'
), act AS (
    SELECT * FROM go WHERE NOT completes OR fast
), lease AS (
    UPDATE labeling_lease SET status = 1
    WHERE task_id = (SELECT id FROM act) AND user_id = %(user)s AND status = 0 AND expires_at > %(now)s
    RETURNING id
), stored AS (
    INSERT INTO labeling_annotation (project_id, task_id, sample_id, user_id, label, duration_ms, created_at)
    SELECT act.project_id, act.id, act.sample_id, %(user)s, %(label)s::text, %(duration)s::integer, %(now)s
    FROM act WHERE EXISTS (SELECT 1 FROM lease)
    RETURNING id
), counted AS (
    UPDATE labeling_task t
    SET n_answers = t.n_answers + 1,
        n_leased = GREATEST(t.n_leased - 1, 0),
        status = CASE WHEN t.kind = 'label' AND t.n_answers + 1 >= t.overlap THEN 1 ELSE 0 END,
        lease_expiry = CASE WHEN t.n_leased > 1 THEN t.lease_expiry END
    WHERE t.id = (SELECT id FROM act) AND EXISTS (SELECT 1 FROM lease)
    RETURNING t.status
), finalize AS (
    SELECT act.project_id, act.sample_id FROM act WHERE act.completes AND EXISTS (SELECT 1 FROM lease)
), old AS (
    SELECT l.label FROM labeling_label l WHERE l.sample_id = (SELECT sample_id FROM finalize)
), final AS (
    INSERT INTO labeling_label (sample_id, project_id, label, confidence, method, n_annotations, updated_at)
    SELECT sample_id, project_id, %(label)s::text, 1.0, 'majority', 1, %(now)s FROM finalize
    ON CONFLICT (sample_id) DO UPDATE
        SET label = EXCLUDED.label, confidence = EXCLUDED.confidence, method = EXCLUDED.method,
            n_annotations = EXCLUDED.n_annotations, updated_at = EXCLUDED.updated_at
        WHERE (labeling_label.label, labeling_label.confidence, labeling_label.method)
            IS DISTINCT FROM (EXCLUDED.label, EXCLUDED.confidence, EXCLUDED.method)
    RETURNING sample_id
), changed AS (
    INSERT INTO labeling_labelchange (project_id, sample_id, old_label, new_label, method, actor_id, reason, created_at)
    SELECT project_id, sample_id, (SELECT label FROM old), %(label)s::text, 'majority',
        %(user)s, 'the one answer', %(now)s
    FROM finalize WHERE (SELECT label FROM old) IS DISTINCT FROM %(label)s::text
    RETURNING id
), marked AS (
    UPDATE labeling_sample SET status = 2 WHERE id = (SELECT sample_id FROM finalize) AND status <> 2
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM target), (SELECT role FROM who), EXISTS (SELECT 1 FROM allowed),
       (SELECT CASE WHEN labels ? %(label)s::text THEN NULL ELSE labels END FROM allowed),
       (SELECT kind FROM task), (SELECT status FROM task), (SELECT project_id FROM task),
       (SELECT sample_id FROM task), EXISTS (SELECT 1 FROM go), (SELECT completes AND NOT fast FROM go),
       (SELECT id FROM stored), (SELECT status FROM counted), EXISTS (SELECT 1 FROM changed),
       (SELECT count(*) FROM final) + (SELECT count(*) FROM marked)
"""
)

LOCK_TASK = "SELECT sample_id, project_id, status FROM labeling_task WHERE id = %s FOR UPDATE"

# The answer once the task row is locked, for answers whose consensus task_finalize makes (the
# caller finalizes in the same transaction). As ANSWER's lease/stored/counted.
ANSWER_LOCKED = """
WITH lease AS (
    UPDATE labeling_lease SET status = 1
    WHERE task_id = %(task)s AND user_id = %(user)s AND status = 0 AND expires_at > %(now)s
    RETURNING id
), stored AS (
    INSERT INTO labeling_annotation (project_id, task_id, sample_id, user_id, label, duration_ms, created_at)
    SELECT %(project)s, %(task)s, %(sample)s, %(user)s, %(label)s::text, %(duration)s::integer, %(now)s FROM lease
    RETURNING id
), counted AS (
    UPDATE labeling_task t
    SET n_answers = t.n_answers + 1,
        n_leased = GREATEST(t.n_leased - 1, 0),
        status = CASE WHEN t.kind = 'label' AND t.n_answers + 1 >= t.overlap THEN 1 ELSE 0 END,
        lease_expiry = (SELECT min(o.expires_at) FROM labeling_lease o
                        WHERE o.task_id = t.id AND o.status = 0 AND o.user_id <> %(user)s)
    WHERE t.id = %(task)s AND t.status = 0 AND t.kind <> 'review' AND EXISTS (SELECT 1 FROM lease)
    RETURNING t.status
)
SELECT (SELECT id FROM stored), (SELECT status FROM counted)
"""


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# statement text -> (the text with $n placeholders, the parameter names in $n order, its name)
_CONVERTED: dict[str, tuple[bytes, tuple[str, ...], bytes]] = {}


def _converted(sql: str) -> tuple[bytes, tuple[str, ...], bytes]:
    """``sql`` with ``%(name)s`` placeholders turned into ``$n`` ones, once per statement. The
    parameters' types are left to PostgreSQL to infer from where they are used (each statement
    casts those it could not infer)."""
    found = _CONVERTED.get(sql)
    if found is None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        text = _PLACEHOLDER.sub(number, sql).replace("%%", "%").encode()
        found = (text, tuple(names), b"labelloop_" + hashlib.sha1(text).hexdigest()[:16].encode())
        _CONVERTED[sql] = found
    return found


def _text(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text input format."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, datetime):
        return value.isoformat().encode()
    if isinstance(value, list | tuple):
        items = ('"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"' for item in value)
        return ("{" + ",".join(items) + "}").encode()
    return str(value).encode()  # int, float


def run(sql: str, params: dict[str, Any]) -> tuple[Any, ...]:
    """One row of ``sql`` (inside the caller's transaction, or alone in autocommit): prepared on
    the connection the first time it runs there, then executed by name."""
    import psycopg  # PostgreSQL only: the quick start on SQLite does not need the driver

    connection.ensure_connection()
    query, names, name = _converted(sql)
    values = [_text(params[key]) for key in names]
    with connection.wrap_database_errors:
        conn = connection.connection
        pgconn = conn.pgconn
        prepared, loader = _state_of(conn)
        if PREPARE:
            if name not in prepared:
                _check(pgconn.prepare(name, query), psycopg)
                prepared.add(name)
            result = pgconn.exec_prepared(name, values)
        else:
            result = pgconn.exec_params(query, values)
        _check(result, psycopg)
        loader.set_pgresult(result)
        row = loader.load_row(0, tuple)
    assert row is not None
    return tuple(row)


def _state_of(conn: Any) -> tuple[set[bytes], Any]:
    """The statements prepared on this psycopg connection (none after a reconnect), and its row
    reader: the connection's loaders (Django's for jsonb and timestamptz), as its cursors use,
    kept from one call to the next as a cursor keeps them."""
    from psycopg.adapt import Transformer

    held = getattr(connection, "_labelloop_prepared", None)
    if held is None or held[0] is not conn:
        held = (conn, set(), Transformer(conn))
        connection._labelloop_prepared = held  # type: ignore[attr-defined]
    return held[1], held[2]


def _check(result: Any, psycopg: Any) -> None:
    """Raise the database's error as psycopg would (Django wraps it)."""
    if result.status not in (psycopg.pq.ExecStatus.COMMAND_OK, psycopg.pq.ExecStatus.TUPLES_OK):
        raise psycopg.errors.error_from_result(result, encoding=connection.connection.info.encoding)


@dataclass(frozen=True)
class Picked:
    found: bool  # the project exists
    role: str | None  # the caller's role, 'staff', or None for a non-member
    allowed: bool  # the role may take tasks
    busy: bool  # no candidate, but only because other transactions held the rows of some
    task_id: int | None  # the candidate, if one was found
    leased: bool  # and leased to the caller
    expires_at: datetime | None
    show_suggestion: bool
    fields: dict[str, Any]  # of the task, when leased
    sample: dict[str, Any]  # of the sample, when leased


def lease_next(
    *,
    project_id: int,
    user_id: int,
    staff: bool,
    roles: Sequence[str],
    review_roles: Sequence[str],
    now: datetime,
    lease_default: int,
    show_default: bool,
    with_reviews: bool = True,
) -> Picked:
    """Run NEXT (inside a transaction or not: alone it is one), and PROBE when it found nothing."""
    row = run(
        NEXT,
        {
            "project": project_id,
            "user": user_id,
            "staff": staff,
            "roles": list(roles),
            "review_roles": list(review_roles),
            "with_reviews": with_reviews,
            "now": now,
            "lease_default": lease_default,
            "show_default": show_default,
        },
    )
    picked = picked_from(row, project_id)
    if picked.task_id is None and picked.allowed:
        reviews = with_reviews and (picked.role == "staff" or picked.role in review_roles)
        (busy,) = run(PROBE, {"project": project_id, "user": user_id, "now": now, "reviews": reviews})
        picked = dataclasses.replace(picked, busy=bool(busy))
    return picked


def picked_from(row: tuple[Any, ...], project_id: int) -> Picked:
    """What NEXT's row says (NEXT and statements built on it return the same columns)."""
    found, role, allowed, expires_at, show, busy = row[:6]
    task_id, leased, reason, kind, priority, overlap, n_answers, created_at = row[6:14]
    sample_id, external_id, data, suggestion, observed_at, sample_status = row[14:]
    return Picked(
        found=bool(found),
        busy=bool(busy),
        role=role,
        allowed=bool(allowed),
        task_id=task_id,
        leased=bool(leased),
        expires_at=expires_at,
        show_suggestion=bool(show),
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


@dataclass(frozen=True)
class Answered:
    found: bool  # the task exists
    role: str | None
    allowed: bool
    bad_label_of: list[str] | None  # the project's labels, when the label is not one of them
    kind: str | None
    task_status: int | None
    project_id: int | None
    sample_id: int | None
    acted: bool  # every condition but the lease held
    needs_finalize: bool  # the answer would complete a task whose consensus task_finalize makes
    annotation_id: int | None  # stored
    new_status: int | None  # of the task, when stored
    label_changed: bool  # the final label was written and changed


def answer(
    *,
    task_id: int,
    user_id: int,
    staff: bool,
    roles: Sequence[str],
    label: str,
    duration_ms: int | None,
    now: datetime,
    method_default: str,
    review_below_default: float,
) -> Answered:
    """Run ANSWER (outside a transaction it is one; inside, the caller's)."""
    row = run(
        ANSWER,
        {
            "task": task_id,
            "user": user_id,
            "staff": staff,
            "roles": list(roles),
            "label": label,
            "duration": duration_ms,
            "now": now,
            "method_default": method_default,
            "review_below_default": review_below_default,
        },
    )
    return answered_from(row)


def answered_from(row: tuple[Any, ...]) -> Answered:
    """What ANSWER's row says (ANSWER and statements built on it return the same columns)."""
    return Answered(
        found=bool(row[0]),
        role=row[1],
        allowed=bool(row[2]),
        bad_label_of=list(row[3]) if row[3] is not None else None,
        kind=row[4],
        task_status=row[5],
        project_id=row[6],
        sample_id=row[7],
        acted=bool(row[8]),
        needs_finalize=bool(row[9]),
        annotation_id=row[10],
        new_status=row[11],
        label_changed=bool(row[12]),
    )


def lock_task(task_id: int) -> tuple[int, int, int] | None:
    """Lock the task row: (sample_id, project_id, status), or None when there is no such task."""
    with connection.cursor() as cursor:
        cursor.execute(LOCK_TASK, [task_id])
        row = cursor.fetchone()
    return (row[0], row[1], row[2]) if row else None


def answer_locked(
    *, task_id: int, project_id: int, sample_id: int, user_id: int, label: str, duration_ms: int | None, now: datetime
) -> tuple[int | None, int | None]:
    """Run ANSWER_LOCKED with the task row locked: (annotation id, task status), (None, None) when
    the user holds no live lease on the task (or it is not pending, or a review task)."""
    row = run(
        ANSWER_LOCKED,
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
    return row[0], row[1]
