"""The annotator's desk: one pending-task index per kind, and counters kept by the database.

Indexes: ``task_pending_idx`` now holds pending *label* tasks only, beside two small ones for
pending gold and review tasks, so that no hand-out walks the rows of another kind (gold tasks sit
at priority 0, under a million label tasks; review tasks above them).

Counters: ``labeling_projectcounter`` holds, per project, ``samples`` (sample rows), ``labeled``
(final labels) and ``queued.<kind>`` (pending tasks of each kind). Triggers keep them in the
transaction of every statement that changes what they count, whoever runs it (the services, bulk
SQL, other apps), so they cannot drift from the rows: statement-level ones for inserts (one upsert
per statement, however many rows), row-level ones for status changes and deletes. On PostgreSQL an
increment or a status change adds to one of SHARDS rows picked at random (concurrent answers do not
queue on one row lock). A delete subtracts from a row that exists and never creates one: a
cascade deleting a project may already have deleted its counters. SQLite (the quick start) has one
writer at a time and uses shard 0. Existing rows are counted once here.
"""

from django.db import migrations, models

SHARDS = 8

PG_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION labeling_counter_add(p bigint, n text, d bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF d <> 0 THEN
        INSERT INTO labeling_projectcounter (project_id, name, shard, value)
        VALUES (p, n, floor(random() * {SHARDS})::int, d)
        ON CONFLICT (project_id, name, shard) DO UPDATE SET value = labeling_projectcounter.value + EXCLUDED.value;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION labeling_counter_take(p bigint, n text, d bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE labeling_projectcounter SET value = value - d
    WHERE id = (SELECT id FROM labeling_projectcounter WHERE project_id = p AND name = n ORDER BY shard LIMIT 1);
END $$;

CREATE OR REPLACE FUNCTION labeling_task_counted_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM labeling_counter_add(project_id, 'queued.' || kind, count(*))
    FROM counted_rows WHERE status = 0 GROUP BY project_id, kind;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION labeling_task_counted_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 0 THEN
        PERFORM labeling_counter_add(OLD.project_id, 'queued.' || OLD.kind, -1);
    END IF;
    IF NEW.status = 0 THEN
        PERFORM labeling_counter_add(NEW.project_id, 'queued.' || NEW.kind, 1);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION labeling_task_counted_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM labeling_counter_take(OLD.project_id, 'queued.' || OLD.kind, 1);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION labeling_rows_counted_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM labeling_counter_add(project_id, TG_ARGV[0], count(*)) FROM counted_rows GROUP BY project_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION labeling_rows_counted_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM labeling_counter_take(OLD.project_id, TG_ARGV[0], 1);
    RETURN NULL;
END $$;

CREATE TRIGGER labeling_task_counted_insert AFTER INSERT ON labeling_task
    REFERENCING NEW TABLE AS counted_rows FOR EACH STATEMENT EXECUTE FUNCTION labeling_task_counted_insert();
CREATE TRIGGER labeling_task_counted_update AFTER UPDATE OF status, kind, project_id ON labeling_task
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.kind IS DISTINCT FROM NEW.kind
        OR OLD.project_id IS DISTINCT FROM NEW.project_id)
    EXECUTE FUNCTION labeling_task_counted_update();
CREATE TRIGGER labeling_task_counted_delete AFTER DELETE ON labeling_task
    FOR EACH ROW WHEN (OLD.status = 0) EXECUTE FUNCTION labeling_task_counted_delete();
CREATE TRIGGER labeling_sample_counted_insert AFTER INSERT ON labeling_sample
    REFERENCING NEW TABLE AS counted_rows FOR EACH STATEMENT EXECUTE FUNCTION labeling_rows_counted_insert('samples');
CREATE TRIGGER labeling_sample_counted_delete AFTER DELETE ON labeling_sample
    FOR EACH ROW EXECUTE FUNCTION labeling_rows_counted_delete('samples');
CREATE TRIGGER labeling_label_counted_insert AFTER INSERT ON labeling_label
    REFERENCING NEW TABLE AS counted_rows FOR EACH STATEMENT EXECUTE FUNCTION labeling_rows_counted_insert('labeled');
CREATE TRIGGER labeling_label_counted_delete AFTER DELETE ON labeling_label
    FOR EACH ROW EXECUTE FUNCTION labeling_rows_counted_delete('labeled');

-- A queue table: every answer leaves a dead entry at the head of the pending index, which each
-- hand-out walks past until vacuum removes it. Vacuum after a fixed number of changes, not after a
-- fifth of the table (200,000 changes at a million tasks).
ALTER TABLE labeling_task SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE labeling_lease SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
"""

PG_DROP = """
ALTER TABLE labeling_task RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_vacuum_cost_delay);
ALTER TABLE labeling_lease RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold);
DROP TRIGGER IF EXISTS labeling_task_counted_insert ON labeling_task;
DROP TRIGGER IF EXISTS labeling_task_counted_update ON labeling_task;
DROP TRIGGER IF EXISTS labeling_task_counted_delete ON labeling_task;
DROP TRIGGER IF EXISTS labeling_sample_counted_insert ON labeling_sample;
DROP TRIGGER IF EXISTS labeling_sample_counted_delete ON labeling_sample;
DROP TRIGGER IF EXISTS labeling_label_counted_insert ON labeling_label;
DROP TRIGGER IF EXISTS labeling_label_counted_delete ON labeling_label;
DROP FUNCTION IF EXISTS labeling_task_counted_insert();
DROP FUNCTION IF EXISTS labeling_task_counted_update();
DROP FUNCTION IF EXISTS labeling_task_counted_delete();
DROP FUNCTION IF EXISTS labeling_rows_counted_insert();
DROP FUNCTION IF EXISTS labeling_rows_counted_delete();
DROP FUNCTION IF EXISTS labeling_counter_add(bigint, text, bigint);
DROP FUNCTION IF EXISTS labeling_counter_take(bigint, text, bigint);
"""


def _sqlite_add(project: str, name: str, delta: str, when: str = "1") -> str:
    return (
        "INSERT INTO labeling_projectcounter (project_id, name, shard, value) "
        f"SELECT {project}, {name}, 0, {delta} WHERE {when} "
        "ON CONFLICT (project_id, name, shard) DO UPDATE SET value = value + excluded.value;"
    )


def _sqlite_take(project: str, name: str) -> str:
    return f"UPDATE labeling_projectcounter SET value = value - 1 WHERE project_id = {project} AND name = {name} AND shard = 0;"


SQLITE_TRIGGERS = [
    "CREATE TRIGGER labeling_task_counted_insert AFTER INSERT ON labeling_task WHEN NEW.status = 0 BEGIN "
    + _sqlite_add("NEW.project_id", "'queued.' || NEW.kind", "1")
    + " END",
    "CREATE TRIGGER labeling_task_counted_update AFTER UPDATE OF status, kind, project_id ON labeling_task "
    "WHEN OLD.status IS NOT NEW.status OR OLD.kind IS NOT NEW.kind OR OLD.project_id IS NOT NEW.project_id BEGIN "
    + _sqlite_add("OLD.project_id", "'queued.' || OLD.kind", "-1", "OLD.status = 0")
    + _sqlite_add("NEW.project_id", "'queued.' || NEW.kind", "1", "NEW.status = 0")
    + " END",
    "CREATE TRIGGER labeling_task_counted_delete AFTER DELETE ON labeling_task WHEN OLD.status = 0 BEGIN "
    + _sqlite_take("OLD.project_id", "'queued.' || OLD.kind")
    + " END",
    "CREATE TRIGGER labeling_sample_counted_insert AFTER INSERT ON labeling_sample BEGIN "
    + _sqlite_add("NEW.project_id", "'samples'", "1")
    + " END",
    "CREATE TRIGGER labeling_sample_counted_delete AFTER DELETE ON labeling_sample BEGIN "
    + _sqlite_take("OLD.project_id", "'samples'")
    + " END",
    "CREATE TRIGGER labeling_label_counted_insert AFTER INSERT ON labeling_label BEGIN "
    + _sqlite_add("NEW.project_id", "'labeled'", "1")
    + " END",
    "CREATE TRIGGER labeling_label_counted_delete AFTER DELETE ON labeling_label BEGIN "
    + _sqlite_take("OLD.project_id", "'labeled'")
    + " END",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "labeling_task_counted_insert",
        "labeling_task_counted_update",
        "labeling_task_counted_delete",
        "labeling_sample_counted_insert",
        "labeling_sample_counted_delete",
        "labeling_label_counted_insert",
        "labeling_label_counted_delete",
    )
]

# What the rows hold now, once (the triggers keep it from here on).
BACKFILL = [
    "DELETE FROM labeling_projectcounter WHERE name IN ('samples', 'labeled') OR name LIKE 'queued.%%'",
    "INSERT INTO labeling_projectcounter (project_id, name, shard, value) "
    "SELECT project_id, 'samples', 0, count(*) FROM labeling_sample GROUP BY project_id",
    "INSERT INTO labeling_projectcounter (project_id, name, shard, value) "
    "SELECT project_id, 'labeled', 0, count(*) FROM labeling_label GROUP BY project_id",
    "INSERT INTO labeling_projectcounter (project_id, name, shard, value) "
    "SELECT project_id, 'queued.' || kind, 0, count(*) FROM labeling_task WHERE status = 0 GROUP BY project_id, kind",
]


def counters_on(apps: object, schema_editor: object) -> None:
    connection = schema_editor.connection  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # No writer may slip between the count and the triggers.
            cursor.execute(
                "LOCK TABLE labeling_task, labeling_sample, labeling_label, labeling_projectcounter "
                "IN SHARE ROW EXCLUSIVE MODE"
            )
            cursor.execute(PG_FUNCTIONS)
        else:
            for statement in SQLITE_TRIGGERS:
                cursor.execute(statement)
        for statement in BACKFILL:
            cursor.execute(statement, [])  # with parameters, so that "%%" reads as "%" on both


def counters_off(apps: object, schema_editor: object) -> None:
    connection = schema_editor.connection  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(PG_DROP)
        else:
            for statement in SQLITE_DROP:
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0004_loop_deepening"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="task", name="task_pending_idx"),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                models.F("project"),
                models.OrderBy(models.F("priority"), descending=True),
                models.F("id"),
                condition=models.Q(("kind", "label"), ("status", 0)),
                name="task_pending_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                models.F("project"),
                models.OrderBy(models.F("priority"), descending=True),
                models.F("id"),
                condition=models.Q(("kind", "gold"), ("status", 0)),
                name="task_pending_gold_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                models.F("project"),
                models.OrderBy(models.F("priority"), descending=True),
                models.F("id"),
                condition=models.Q(("kind", "review"), ("status", 0)),
                name="task_pending_review_idx",
            ),
        ),
        migrations.RunPython(counters_on, counters_off),
    ]
