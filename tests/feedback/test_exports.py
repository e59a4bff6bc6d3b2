"""Exports of a dataset version: CSV, JSONL and Parquet, streamed, with the version's hash, and
the same bytes whenever a version is exported (on SQLite here, on PostgreSQL's server-side cursor
when DATABASE_URL says so)."""

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import User

from feedback import datasets, exports
from feedback.ingest import samples_ingest
from feedback.models import DatasetVersion
from labeling.models import LabelMethod, Project, Sample
from labeling.services.labels import LabelDecision, labels_set

pytestmark = pytest.mark.django_db


def _quiet(project: Project) -> None:
    project.settings["retrain"]["min_new_labels"] = 10**6
    project.save()


def _export(version: DatasetVersion, project: Project, fmt: str) -> bytes:
    return b"".join(exports.stream(version, project.fields(), fmt))


def _cut(project: Project) -> DatasetVersion:
    return datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version


@pytest.fixture
def versions(project: Project, rows: Any) -> tuple[DatasetVersion, DatasetVersion]:
    _quiet(project)
    samples_ingest(project=project, items=rows(20, labeled=True), actor=None)
    first = _cut(project)
    ids = list(Sample.objects.filter(project=project).order_by("id").values_list("id", flat=True)[:4])
    decisions = [LabelDecision(i, "bird", 1.0, LabelMethod.REVIEW, 1) for i in ids]
    labels_set(project_id=project.pk, decisions=decisions, actor=None)
    samples_ingest(project=project, items=rows(3, start=100, labeled=True), actor=None)
    return first, _cut(project)


def test_three_formats_hold_the_same_rows(project: Project, versions: Any) -> None:
    _, second = versions
    names = [name for name, _ in project.fields()]
    jsonl = [json.loads(line) for line in _export(second, project, "jsonl").splitlines()]
    assert [list(row) for row in jsonl[:1]] == [["external_id", *names, "label"]]
    table = list(csv.DictReader(io.StringIO(_export(second, project, "csv").decode())))
    parquet = pq.read_table(io.BytesIO(_export(second, project, "parquet")))
    assert parquet.column_names == ["external_id", *names, "label"]
    assert str(parquet.schema.field("x").type) == "double" and str(parquet.schema.field("colour").type) == "string"
    as_parquet = parquet.to_pylist()
    assert len(jsonl) == len(table) == len(as_parquet) == second.size == 23
    for j, c, p in zip(jsonl, table, as_parquet, strict=True):
        assert j == p  # same values, same types
        assert (c["external_id"], c["label"], float(c["x"]), c["colour"]) == (
            j["external_id"],
            j["label"],
            j["x"],
            j["colour"],
        )
    assert {row["external_id"]: row["label"] for row in jsonl}["s0"] == "bird"


def test_the_hash_is_in_the_file_name_and_the_parquet_metadata(project: Project, versions: Any) -> None:
    _, second = versions
    assert second.hash[:16] in exports.filename(project.pk, second, "parquet")
    metadata = pq.read_schema(io.BytesIO(_export(second, project, "parquet"))).metadata
    assert metadata[b"labelloop.dataset_hash"].decode() == second.hash
    assert metadata[b"labelloop.dataset_version"] == b"2"


def test_a_version_exports_the_same_bytes_after_later_changes(project: Project, versions: Any, rows: Any) -> None:
    first, _ = versions
    before = {fmt: _export(first, project, fmt) for fmt in exports.FORMATS}
    ids = list(Sample.objects.filter(project=project).values_list("id", flat=True))
    labels_set(
        project_id=project.pk, decisions=[LabelDecision(i, "cat", 1.0, LabelMethod.REVIEW, 1) for i in ids], actor=None
    )
    samples_ingest(project=project, items=rows(5, start=300, labeled=True), actor=None)
    third = _cut(project)
    assert third.version == 3
    first.refresh_from_db()
    after = {fmt: _export(first, project, fmt) for fmt in exports.FORMATS}
    assert after == before
    assert {json.loads(line)["label"] for line in after["jsonl"].splitlines()} == {"cat", "dog", "bird"}


def test_exports_stream_batch_by_batch(project: Project, versions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first chunk leaves after one batch is read, not after the whole version."""
    _, second = versions
    read: list[int] = []

    def small_batches(*, version: DatasetVersion, batch: int = 0) -> Iterator[list[Any]]:
        for rows in datasets.member_batches(version=version, batch=5):
            read.append(len(rows))
            yield rows

    def small_copies(**kwargs: Any) -> Any:
        for k, row in enumerate(datasets.member_copy(**kwargs)):
            if k % 5 == 0:
                read.append(0)
            read[-1] += 1
            yield row

    def small_selects(*, version: DatasetVersion, select: str, params: list[Any], batch: int = 0) -> Any:
        for rows in datasets.member_select(version=version, select=select, params=params, batch=5):
            read.append(len(rows))
            yield rows

    monkeypatch.setattr(exports, "member_batches", small_batches)
    monkeypatch.setattr(exports, "member_select", small_selects)
    monkeypatch.setattr(exports, "member_copy", small_copies)
    monkeypatch.setattr(exports, "CHUNK", 5)
    for fmt, header in (("jsonl", 0), ("csv", 1)):
        read.clear()
        chunks = iter(exports.stream(second, project.fields(), fmt))
        for _ in range(header + 1):
            assert next(chunks)
        assert sum(read) == 5, fmt
        rest = list(chunks)
        assert sum(read) == 23 and len(rest) >= 4
    monkeypatch.setattr(exports, "PARQUET_ROW_GROUP", 10)
    read.clear()
    parts = iter(exports.stream(second, project.fields(), "parquet"))
    head = next(parts)
    assert sum(read) < 23  # a row group left before the last rows were read
    whole = pq.ParquetFile(io.BytesIO(head + b"".join(parts)))
    assert whole.metadata.num_rows == 23 and whole.metadata.num_row_groups >= 3


def test_export_api_streams_each_format_and_refuses_pruned(
    project: Project, versions: Any, manager: User, client_for: Any
) -> None:
    first, second = versions
    api = client_for(manager)
    base = f"/api/projects/{project.pk}/datasets/2/export/"
    response = api.get(base + "?format=parquet")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["X-Dataset-Hash"] == second.hash and second.hash[:16] in response["Content-Disposition"]
    assert pq.read_table(io.BytesIO(b"".join(response.streaming_content))).num_rows == second.size
    DatasetVersion.objects.filter(pk=first.pk).update(pruned_at="2026-01-01T00:00:00Z")
    gone = api.get(f"/api/projects/{project.pk}/datasets/1/export/?format=csv")
    assert gone.status_code == 410 and "pruned" in gone.json()["detail"]
    assert api.get(f"/api/projects/{project.pk}/datasets/2/diff/?against=1").status_code == 410


def test_awkward_text_survives_every_format(project: Project) -> None:
    _quiet(project)
    note = 'a "quoted", back\\slash \\\\ two, tab\tnew\nline, é, 🐈, '
    items = [
        {"external_id": 'id,"1"\\', "data": {"x": 1.5, "colour": "", "note": note}, "label": "cat"},
        {"external_id": "plain", "data": {"x": None, "colour": None, "note": None}, "label": "dog"},
    ]
    samples_ingest(project=project, items=items, actor=None)
    version = _cut(project)
    jsonl = [json.loads(line) for line in _export(version, project, "jsonl").splitlines()]
    table = list(csv.DictReader(io.StringIO(_export(version, project, "csv").decode(), newline="")))
    parquet = pq.read_table(io.BytesIO(_export(version, project, "parquet"))).to_pylist()
    expected = [
        {"external_id": 'id,"1"\\', "x": 1.5, "colour": "", "note": note, "label": "cat"},
        {"external_id": "plain", "x": None, "colour": None, "note": None, "label": "dog"},
    ]
    assert jsonl == expected and parquet == expected
    assert [row["note"] for row in table] == [note, ""] and table[0]["external_id"] == 'id,"1"\\'
