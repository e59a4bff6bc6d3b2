"""The desk under load: counter shards by connection, not at random, and more of them.

Every answer adds to two counters (``queued.label`` and ``labeled``) in its transaction and holds
the shard rows it changed until it commits, fsync included. With 8 shards picked at random, 32
concurrent answers queued on each other's shard locks (``Lock:transactionid`` was the main wait in
bench/queue_load.py). A connection now always writes shard ``pg_backend_pid() % SHARDS`` of 32:
two connections only ever share a shard when their process ids collide, and then always the
same pair. Readers still sum a counter's shards (at most 32 rows by index). The increment tries
the plain UPDATE of its shard first (the common case) and falls back to the upsert that creates
the row. SQLite (one writer at a time) keeps shard 0.
"""

from django.db import migrations

SHARDS = 32

PG_BY_CONNECTION = f"""
CREATE OR REPLACE FUNCTION labeling_counter_add(p bigint, n text, d bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s int := pg_backend_pid() % {SHARDS};
BEGIN
    IF d <> 0 THEN
        UPDATE labeling_projectcounter SET value = value + d WHERE project_id = p AND name = n AND shard = s;
        IF NOT FOUND THEN
            INSERT INTO labeling_projectcounter (project_id, name, shard, value) VALUES (p, n, s, d)
            ON CONFLICT (project_id, name, shard) DO UPDATE SET value = labeling_projectcounter.value + EXCLUDED.value;
        END IF;
    END IF;
END $$;
"""

# As migration 0005 left it.
PG_AT_RANDOM = """
CREATE OR REPLACE FUNCTION labeling_counter_add(p bigint, n text, d bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF d <> 0 THEN
        INSERT INTO labeling_projectcounter (project_id, name, shard, value)
        VALUES (p, n, floor(random() * 8)::int, d)
        ON CONFLICT (project_id, name, shard) DO UPDATE SET value = labeling_projectcounter.value + EXCLUDED.value;
    END IF;
END $$;
"""


def _on_postgresql(sql: str) -> object:
    def run(apps: object, schema_editor: object) -> None:
        connection = schema_editor.connection  # type: ignore[attr-defined]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0006_derived_state"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(PG_BY_CONNECTION), _on_postgresql(PG_AT_RANDOM)),  # type: ignore[arg-type]
    ]
