"""A project's counters: its samples, its final labels and its pending tasks by kind.

They are kept by the database, not by this module: triggers installed by migration
``0005_desk_queue`` add to ``labeling_projectcounter`` in the transaction of every statement that
inserts, deletes or changes the status (or kind) of a counted row, whichever code runs it (the
services here, feedback's bulk SQL, gold and selection), so a counter cannot drift from its rows.
Writers add to one of ``ProjectCounter.SHARDS`` rows, one per connection (concurrent answers do not
queue on one row lock); readers sum a project's rows, a handful found by index, whatever the
project's size. ``counters_rebuild`` recounts from the rows, for repairs (e.g. after a TRUNCATE,
which fires no row triggers).

Names: ``samples``, ``labeled``, ``queued.label``, ``queued.gold``, ``queued.review``.
"""

from django.db import connection, transaction
from django.db.models import Sum

from labeling.models import Label, ProjectCounter, Sample, Task, TaskKind, TaskStatus

QUEUED = "queued."
KINDS = tuple(TaskKind.values)


def project_counters(*, project_id: int) -> dict[str, int]:
    """The project's counters: ``samples``, ``labeled``, ``queued`` (every pending task, the
    number API.md's ``counts.queued`` promises) and ``queued_<kind>`` per kind. One indexed query
    over the project's counter rows."""
    rows = ProjectCounter.objects.filter(project_id=project_id).values("name").annotate(total=Sum("value"))
    found = {row["name"]: int(row["total"] or 0) for row in rows}
    out = {"samples": found.get("samples", 0), "labeled": found.get("labeled", 0)}
    for kind in KINDS:
        out[f"queued_{kind}"] = found.get(QUEUED + kind, 0)
    out["queued"] = sum(out[f"queued_{kind}"] for kind in KINDS)
    return out


def counters_rebuild(*, project_id: int) -> dict[str, int]:
    """Recount the project's counters from its rows and store them as single shards; returns them.

    One transaction. On PostgreSQL it locks the counted tables against writes (SHARE ROW
    EXCLUSIVE) while it counts, so no change slips between a count and its row: a repair tool,
    not something to run on a busy system. Counts every row of the project.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "LOCK TABLE labeling_task, labeling_sample, labeling_label, labeling_projectcounter "
                    "IN SHARE ROW EXCLUSIVE MODE"
                )
        values = {
            "samples": Sample.objects.filter(project_id=project_id).count(),
            "labeled": Label.objects.filter(project_id=project_id).count(),
        }
        for kind in KINDS:
            values[QUEUED + kind] = Task.objects.filter(
                project_id=project_id, status=TaskStatus.PENDING, kind=kind
            ).count()
        ProjectCounter.objects.filter(project_id=project_id, name__in=list(values)).delete()
        ProjectCounter.objects.bulk_create(
            [ProjectCounter(project_id=project_id, name=name, shard=0, value=n) for name, n in values.items()]
        )
    return project_counters(project_id=project_id)
