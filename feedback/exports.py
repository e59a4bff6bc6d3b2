"""Streaming a dataset version as flat rows: external_id, one column per schema field, label.

CSV, JSONL and Parquet, produced batch by batch as the rows are read, so that no format holds the
whole set in memory and the first bytes leave before the last row is read. On PostgreSQL the
server builds each JSONL line (datasets.member_select, a server-side cursor) and each CSV row
(datasets.member_copy: COPY ... TO STDOUT), and Parquet columns are parsed by Arrow's C++ reader
from CSV lines the server builds (datasets.member_select);
elsewhere the portable path decodes each row's data (datasets.member_batches). The version's
hash is in the file name, in the HTTP headers, and for Parquet in the file's own key-value
metadata. The same version always exports the same bytes: its rows never change and are read in
sample order.
"""

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from django.db import connection

from feedback.datasets import CHUNK, member_batches, member_copy, member_select
from feedback.models import DatasetVersion

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
# Parquet row groups of this many rows: one arrow table in memory at a time.
PARQUET_ROW_GROUP = 65_536
ARROW_TYPES = {"numeric": pa.float64()}  # every other kind is a string column


def _datas(rows: list[Any]) -> list[dict[str, Any]]:
    loads = orjson.loads
    return [loads(row[2]) if row[2] else {} for row in rows]


def _grouped(rows: Iterator[bytes | memoryview], size: int | None = None) -> Iterator[bytes]:
    """COPY's rows joined ``size`` (CHUNK) at a time (one chunk per row would cost a write each)."""
    size = size or CHUNK
    pending: list[bytes | memoryview] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= size:
            yield b"".join(pending)
            pending = []
    if pending:
        yield b"".join(pending)


def _text_columns(fields: list[str]) -> tuple[str, list[Any]]:
    select = ", ".join(["s.external_id", *["s.data ->> %s" for _ in fields], "m.label"])
    return select, list(fields)


def _csv(version: DatasetVersion, fields: list[str]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["external_id", *fields, "label"])
    yield buffer.getvalue().encode()
    if connection.vendor == "postgresql":
        select, params = _text_columns(fields)
        yield from _grouped(member_copy(version=version, select=select, params=params, csv=True))
        return
    for rows in member_batches(version=version):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(
            [
                [row[1], *["" if (v := data.get(f)) is None else v for f in fields], row[3]]
                for row, data in zip(rows, _datas(rows), strict=True)
            ]
        )
        yield buffer.getvalue().encode()


def _json_line(fields: list[tuple[str, str]]) -> tuple[str, list[Any]]:
    """One JSONL line per row, built by PostgreSQL in the columns' order (jsonb would sort the
    keys): fields are extracted as text (``->>``), numbers are JSON as they are, strings go
    through to_json(text) (cheaper for the server than printing jsonb). Every name is a parameter."""
    parts = ["'{\"external_id\":'", "to_json(s.external_id)::text"]
    params: list[Any] = []
    for name, kind in fields:
        value = "s.data ->> %s" if kind == "numeric" else "to_json(s.data ->> %s)::text"
        parts += ["%s", f"COALESCE({value}, 'null')"]
        params += ["," + orjson.dumps(name).decode() + ":", name]
    parts += ["',\"label\":'", "to_json(m.label)::text", "'}'"]
    return " || ".join(parts), params


def _jsonl(version: DatasetVersion, all_fields: list[tuple[str, str]]) -> Iterator[bytes]:
    fields = [name for name, _ in all_fields]
    dumps = orjson.dumps
    if connection.vendor == "postgresql":
        select, params = _json_line(all_fields)
        for rows in member_select(version=version, select=select, params=params, batch=CHUNK):
            yield ("\n".join([row[0] for row in rows]) + "\n").encode()
        return
    for rows in member_batches(version=version):
        lines = [
            dumps({"external_id": row[1], **{f: data.get(f) for f in fields}, "label": row[3]})
            for row, data in zip(rows, _datas(rows), strict=True)
        ]
        yield b"\n".join(lines) + b"\n"


class _Sink(io.RawIOBase):
    """A write-only file that keeps what the Parquet writer wrote until it is taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        return out


def arrow_schema(version: DatasetVersion, fields: list[tuple[str, str]]) -> pa.Schema:
    columns = [pa.field("external_id", pa.string(), nullable=False)]
    columns += [pa.field(name, ARROW_TYPES.get(kind, pa.string())) for name, kind in fields]
    columns.append(pa.field("label", pa.string(), nullable=False))
    metadata = {
        "labelloop.dataset_hash": version.hash,
        "labelloop.dataset_version": str(version.version),
        "labelloop.project": str(version.project_id),
    }
    return pa.schema(columns, metadata=metadata)


def _column(values: list[Any], kind: str) -> pa.Array:
    if kind == "numeric":
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _quoted(expression: str) -> str:
    """A CSV field of a text ``expression``, quoted by PostgreSQL: NULL stays NULL."""
    return "'\"' || replace(" + expression + ", '\"', '\"\"') || '\"'"


def _csv_line(fields: list[tuple[str, str]]) -> tuple[str, list[Any]]:
    """One CSV line per row, built by PostgreSQL: strings always quoted (an empty string is
    ``""``), NULL as an empty unquoted field, numbers as JSON wrote them. Every name is a
    parameter. One text value per row is what the Parquet export reads (fetching one column is far
    cheaper for Python than COPY's row-by-row messages or one object per value)."""
    parts = [_quoted("s.external_id")]
    for _name, kind in fields:
        parts.append(
            "COALESCE(s.data ->> %s, '')" if kind == "numeric" else f"COALESCE({_quoted('s.data ->> %s')}, '')"
        )
    parts.append(_quoted("m.label"))
    return " || ',' || ".join(parts), [name for name, _ in fields]


def _parquet(version: DatasetVersion, fields: list[tuple[str, str]]) -> Iterator[bytes]:
    schema = arrow_schema(version, fields)
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="snappy")
    if connection.vendor == "postgresql":
        select, params = _csv_line(fields)
        names = ["external_id", *[name for name, _ in fields], "label"]
        read = pacsv.ReadOptions(column_names=names, block_size=1 << 26)
        parse = pacsv.ParseOptions(newlines_in_values=True)  # text fields may hold newlines
        convert = pacsv.ConvertOptions(
            column_types={field.name: field.type for field in schema},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # NULL is an unquoted empty field, "" an empty string
        )
        for rows in member_select(version=version, select=select, params=params, batch=PARQUET_ROW_GROUP):
            block = ("\n".join([row[0] for row in rows]) + "\n").encode()
            table = pacsv.read_csv(pa.py_buffer(block), read_options=read, parse_options=parse, convert_options=convert)
            writer.write_table(table.cast(schema), row_group_size=PARQUET_ROW_GROUP)
            yield sink.take()
        writer.close()
        yield sink.take()
        return
    pending: list[Any] = []

    def flush() -> bytes:
        datas = _datas(pending)
        arrays = [pa.array([row[1] for row in pending], type=pa.string())]
        arrays += [_column([d.get(name) for d in datas], kind) for name, kind in fields]
        arrays.append(pa.array([row[3] for row in pending], type=pa.string()))
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=PARQUET_ROW_GROUP)
        pending.clear()
        return sink.take()

    for rows in member_batches(version=version, batch=CHUNK):
        pending.extend(rows)
        if len(pending) >= PARQUET_ROW_GROUP:
            yield flush()
    if pending:
        yield flush()
    writer.close()
    yield sink.take()


def stream(version: DatasetVersion, fields: list[tuple[str, str]], fmt: str) -> Iterator[bytes]:
    """Encoded chunks of the export of ``version`` with columns ``fields`` ((name, kind) in the
    project's order), produced as the rows are read. Raises VersionPruned (on the first chunk)
    for a pruned version."""
    names = [name for name, _ in fields]
    if fmt == "csv":
        return _csv(version, names)
    if fmt == "parquet":
        return _parquet(version, fields)
    return _jsonl(version, fields)


def filename(project_id: int, version: DatasetVersion, fmt: str) -> str:
    return f"labelloop-p{project_id}-v{version.version}-{version.hash[:16]}.{fmt}"
