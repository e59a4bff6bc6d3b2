"""Set-based updates that Django's ORM would do row by row (bulk_update builds a CASE per row).

Two ways in: ``update_from_values`` takes Python rows and sends them as ``VALUES`` lists (any
backend); ``update_from_arrays`` takes numpy columns and, on PostgreSQL, streams them with one
binary ``COPY`` into a temporary table and runs one ``UPDATE ... FROM`` (the rows never become
Python objects: a million rows cost one ``tobytes`` and one statement). Elsewhere it falls back to
``update_from_values``.
"""

import struct
from collections.abc import Mapping, Sequence
from itertools import count
from typing import Any

import numpy as np
from django.db import connection, transaction
from numpy.typing import NDArray

# SQLite accepts at most 32766 bound parameters per statement.
ROWS_PER_STATEMENT = 5000
# Up to this many rows, update_from_arrays joins by the target's index (see there).
INDEX_JOIN_MAX = 200_000
# numpy dtype -> (PostgreSQL type, big-endian dtype of COPY's binary format). Only fixed-width
# types: a binary COPY row of them is one numpy record.
_PG_TYPES: dict[str, tuple[str, str]] = {
    "int64": ("bigint", ">i8"),
    "int32": ("integer", ">i4"),
    "int16": ("smallint", ">i2"),
    "float64": ("double precision", ">f8"),
    "bool": ("boolean", "?"),
}
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_temp_names = count()


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


def binary_copy_payload(arrays: Sequence[NDArray[Any]]) -> bytes:
    """The rows of equally long fixed-width numpy columns in PostgreSQL's binary COPY format
    (no NULLs: callers encode "none" as a value of their own, e.g. NaN or -1)."""
    n = len(arrays[0]) if arrays else 0
    layout: list[tuple[str, str]] = [("fields", ">i2")]
    for i, array in enumerate(arrays):
        if len(array) != n:
            raise ValueError("columns of different lengths")
        layout += [(f"len{i}", ">i4"), (f"c{i}", _PG_TYPES[array.dtype.name][1])]
    records = np.empty(n, dtype=layout)
    records["fields"] = len(arrays)
    for i, array in enumerate(arrays):
        records[f"len{i}"] = array.dtype.itemsize
        records[f"c{i}"] = array
    return _COPY_HEADER + records.tobytes() + _COPY_TRAILER


def binary_copy_columns(payload: bytes, dtypes: Sequence[str]) -> list[NDArray[Any]]:
    """Columns of a binary ``COPY ... TO STDOUT`` whose fields are all fixed-width and never NULL
    (numpy dtype names, as in _PG_TYPES), in native byte order: one ``frombuffer``, no Python row."""
    layout: list[tuple[str, str]] = [("fields", ">i2")]
    for i, name in enumerate(dtypes):
        layout += [(f"len{i}", ">i4"), (f"c{i}", _PG_TYPES[name][1])]
    body = payload[len(_COPY_HEADER) : len(payload) - len(_COPY_TRAILER)]
    if not payload.startswith(_COPY_HEADER) or not payload.endswith(_COPY_TRAILER):
        raise ValueError("not a binary COPY payload without header extensions")
    records = np.frombuffer(body, dtype=np.dtype(layout))
    for i, name in enumerate(dtypes):
        if len(records) and not (records[f"len{i}"] == np.dtype(name).itemsize).all():
            raise ValueError(f"column {i}: NULL or not {name}")
    return [records[f"c{i}"].astype(name) for i, name in enumerate(dtypes)]


def copy_out(statement: str) -> bytes:
    """The whole output of ``COPY (...) TO STDOUT ...`` on PostgreSQL, as bytes."""
    out = bytearray()
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for chunk in copy:
            out += chunk
    return bytes(out)


def update_from_arrays(
    *,
    table: str,
    key: str,
    columns: Mapping[str, NDArray[Any]],
    assignments: Mapping[str, str] | None = None,
    set_params: Sequence[Any] = (),
    where: str = "",
    params: Sequence[Any] = (),
) -> int:
    """``UPDATE table SET ... FROM <the columns> v WHERE table.key = v.key [AND where]``.

    ``columns`` maps names to equally long numpy arrays (int64/int32/int16/float64/bool), the key
    column among them. ``assignments`` maps target columns to SQL expressions over ``v.<name>``
    (their ``%s`` bound to ``set_params``, in order); by default every non-key column is assigned
    as is. ``where``'s ``%s`` are bound to ``params``. On PostgreSQL: one binary COPY into a
    temporary table, one UPDATE, the table dropped. Elsewhere: VALUES lists of ROWS_PER_STATEMENT
    rows. Returns the number of rows updated. Identifiers and expressions are the caller's
    constants, never user input.
    """
    names = list(columns)
    if key not in columns:
        raise ValueError("the key must be one of the columns")
    n = len(columns[key])
    if n == 0:
        return 0
    sets = dict(assignments) if assignments is not None else {c: f"v.{c}" for c in names if c != key}
    extra = f" AND {where}" if where else ""
    if connection.vendor != "postgresql":
        return _update_portable(table, key, names, columns, sets, set_params, extra, params)
    temp = f"bulk_update_{next(_temp_names)}"
    definition = ", ".join(f"{name} {_PG_TYPES[columns[name].dtype.name][0]}" for name in names)
    payload = binary_copy_payload([columns[name] for name in names])
    set_sql = ", ".join(f"{target} = {expression}" for target, expression in sets.items())
    # One transaction (a savepoint inside the caller's), so that the planner settings below hold.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {temp} ({definition})")
        with cursor.cursor.copy(f"COPY {temp} ({', '.join(names)}) FROM STDIN WITH (FORMAT binary)") as copy:
            copy.write(payload)
        # An index on the key keeps the join cheap whichever way the planner nests it: with stale
        # statistics of the target (a bulk load not yet analyzed) it takes the target for a row or
        # two and would scan this table once per target row (minutes for 100,000 tasks).
        cursor.execute(f"CREATE INDEX ON {temp} ({key})")
        cursor.execute(f"ANALYZE {temp}")
        index_join = n <= INDEX_JOIN_MAX
        if index_join:
            # The planner hashes the whole target table (a scan of a million rows: 1-2 s here) where
            # probing its index once per updated row costs a fraction of that. Local to this statement.
            cursor.execute(
                "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
            )
        cursor.execute(
            f"UPDATE {table} SET {set_sql} FROM {temp} AS v WHERE {table}.{key} = v.{key}{extra}",
            [*set_params, *params],
        )
        updated = cursor.rowcount
        if index_join:
            cursor.execute(
                "SELECT set_config('enable_hashjoin', 'on', true), set_config('enable_mergejoin', 'on', true)"
            )
        cursor.execute(f"DROP TABLE {temp}")
    return updated


def _update_portable(
    table: str,
    key: str,
    names: list[str],
    columns: Mapping[str, NDArray[Any]],
    sets: Mapping[str, str],
    set_params: Sequence[Any],
    extra: str,
    params: Sequence[Any],
) -> int:
    aliases = ", ".join(f"column{i + 1} AS {name}" for i, name in enumerate(names))
    set_sql = ", ".join(f"{target} = {expression}" for target, expression in sets.items())
    lists = [columns[name].tolist() for name in names]
    width = len(names)
    updated = 0
    with connection.cursor() as cursor:
        for start in range(0, len(lists[0]), ROWS_PER_STATEMENT):
            chunk = list(zip(*(values[start : start + ROWS_PER_STATEMENT] for values in lists), strict=True))
            placeholders = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(chunk))
            sql = (
                f"UPDATE {table} SET {set_sql} FROM (SELECT {aliases} FROM (VALUES {placeholders}) AS vv) AS v "
                f"WHERE {table}.{key} = v.{key}{extra}"
            )
            cursor.execute(sql, [*set_params, *(value for row in chunk for value in row), *params])
            updated += cursor.rowcount
    return updated
