"""Streaming a dataset version as flat rows: external_id, one column per schema field, label."""

import csv
from collections.abc import Iterator
from typing import Any

import orjson

from feedback.datasets import rows_at
from feedback.models import DatasetVersion

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


class _Line:
    """A file-like object that hands back what csv.writer writes instead of keeping it."""

    def write(self, text: str) -> str:
        return text


def _flat(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    data = row["data"] or {}
    return {"external_id": row["external_id"], **{f: data.get(f) for f in fields}, "label": row["label"]}


def stream(version: DatasetVersion, fields: list[str], fmt: str) -> Iterator[bytes]:
    """Encoded lines of the export, produced as the rows are read (never the whole set in memory)."""
    if fmt == "csv":
        writer = csv.writer(_Line())
        yield writer.writerow(["external_id", *fields, "label"]).encode()
        for row in rows_at(version=version):
            flat = _flat(row, fields)
            yield writer.writerow(["" if v is None else v for v in flat.values()]).encode()
        return
    for row in rows_at(version=version):
        yield orjson.dumps(_flat(row, fields)) + b"\n"


def filename(project_id: int, version: DatasetVersion, fmt: str) -> str:
    return f"labelloop-p{project_id}-v{version.version}-{version.hash[:16]}.{fmt}"
