"""Set-based updates that Django's ORM would do row by row (bulk_update builds a CASE per row)."""

from collections.abc import Sequence
from typing import Any

from django.db import connection

# SQLite accepts at most 32766 bound parameters per statement.
ROWS_PER_STATEMENT = 5000


def update_from_values(
    *,
    table: str,
    key: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    where: str = "",
    params: Sequence[Any] = (),
) -> int:
    """``UPDATE table SET col = v.col ... FROM (VALUES ...) v WHERE table.key = v.key [AND where]``.

    ``rows`` are (key, *columns) tuples. One statement per ROWS_PER_STATEMENT rows; works on
    PostgreSQL and SQLite (>= 3.33). Returns the number of rows updated. Identifiers are the
    caller's constants, never user input.
    """
    names = [key, *columns]
    width = len(names)
    aliases = ", ".join(f"column{i + 1} AS {name}" for i, name in enumerate(names))
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    extra = f" AND {where}" if where else ""
    updated = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            placeholders = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(chunk))
            sql = (
                f"UPDATE {table} SET {assignments} FROM (SELECT {aliases} FROM (VALUES {placeholders}) AS vv) AS v "
                f"WHERE {table}.{key} = v.{key}{extra}"
            )
            flat = [value for row in chunk for value in row]
            cursor.execute(sql, [*flat, *params])
            updated += cursor.rowcount
    return updated
