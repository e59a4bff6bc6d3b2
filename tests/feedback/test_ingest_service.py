"""feedback/ingest.py (and labeling's samples_add_bulk under it): what an ingest stores, on SQLite and
PostgreSQL, and that PostgreSQL's bulk path stores exactly what the portable ORM path stores."""

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connection, connections

from feedback import ingest, tasks, uncertainty
from feedback.ingest import IngestResult, samples_ingest
from feedback.models import DatasetVersion, ModelVersion, SampleScore, TrainingRun
from feedback.rows import check_batch
from labeling import events
from labeling.models import (
    Label,
    LabelChange,
    LabelMethod,
    Project,
    Reason,
    Sample,
    SampleStatus,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.services import labels as label_service
from labeling.services import samples as sample_service
from labeling.services.labels import LabelDecision, labels_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = pytest.mark.django_db
INDIA = timezone(timedelta(hours=5, minutes=30))

Rows = Callable[..., list[dict[str, Any]]]


def stored(project: Project) -> dict[str, dict[str, Any]]:
    """Everything an ingest writes for a project, by external_id, without ids and write times."""
    out: dict[str, dict[str, Any]] = {}
    for sample in Sample.objects.filter(project=project):
        out[sample.external_id] = {
            "data": sample.data,
            "observed_at": sample.observed_at,
            "status": sample.status,
            "suggestion": sample.suggestion,
            "tasks": [
                (t.kind, t.reason, t.priority, t.status, t.overlap, t.n_answers, t.n_leased, t.lease_expiry)
                for t in Task.objects.filter(sample=sample).order_by("id")
            ],
            "label": [
                (lab.label, lab.confidence, lab.method, lab.n_annotations)
                for lab in Label.objects.filter(sample=sample, project=project)
            ],
            "changes": [
                (c.old_label, c.new_label, c.method, c.actor_id, c.reason)
                for c in LabelChange.objects.filter(sample=sample, project=project).order_by("id")
            ],
            "score": [
                (
                    s.production_label,
                    s.production_probabilities,
                    s.production_model_version,
                    s.uncertainty,
                    s.scored_by_id,
                    s.scored_at is not None,
                )
                for s in SampleScore.objects.filter(sample=sample, project=project)
            ],
        }
    return out


def make_model_version(project: Project) -> ModelVersion:
    dataset = DatasetVersion.objects.create(project=project, version=1, hash="0" * 64, size=0, trigger="manual")
    run = TrainingRun.objects.create(
        project=project, dataset_version=dataset, config={}, config_hash="h", trigger="manual"
    )
    return ModelVersion.objects.create(
        project=project, version=1, run=run, dataset_version=dataset, classes=project.labels, digest="0" * 64
    )


def test_invalid_rows_are_reported_by_index_and_the_valid_ones_stored(project: Project, rows: Rows) -> None:
    items: list[Any] = rows(3)
    items.insert(1, {"external_id": "bad", "data": {"x": "ten"}})
    items.append("not an object")
    result = samples_ingest(project=project, items=items, actor=None)
    assert (result.created, result.duplicates) == (3, 0)
    assert [(r["index"], r["external_id"]) for r in result.rejected] == [(1, "bad"), (4, None)]
    assert set(stored(project)) == {"s0", "s1", "s2"}


def test_a_known_external_id_is_a_duplicate_and_changes_nothing(project: Project, manager: User, rows: Rows) -> None:
    samples_ingest(project=project, items=rows(3) + rows(1, start=50, labeled=True), actor=manager)
    before = stored(project)
    again = rows(4) + rows(1, start=50, probabilities=False)
    again[0]["data"]["note"] = "changed"
    again[1]["label"] = "bird"
    again[2]["prediction"] = {"probabilities": {"bird": 1.0}}
    result = samples_ingest(project=project, items=again, actor=manager)
    assert (result.created, result.duplicates, result.rejected) == (1, 4, [])
    after = stored(project)
    assert after.pop("s3")["tasks"]  # the one new sample
    assert after == before


def test_within_a_request_the_first_occurrence_wins(project: Project, rows: Rows) -> None:
    first, other, second = rows(3)
    second["external_id"] = first["external_id"]
    second["data"]["note"] = "second"
    second["label"] = "dog"
    result = samples_ingest(project=project, items=[first, other, second], actor=None)
    assert (result.created, result.duplicates) == (2, 1)
    kept = stored(project)["s0"]
    assert kept["data"]["note"] == first["data"]["note"]
    assert kept["label"] == [] and len(kept["tasks"]) == 1


def test_ids_follow_the_order_of_the_items(project: Project, rows: Rows) -> None:
    items = [rows(1, start=i)[0] for i in (5, 1, 9, 3, 7)]
    samples_ingest(project=project, items=items, actor=None)
    by_sample = list(Sample.objects.filter(project=project).order_by("id").values_list("external_id", flat=True))
    by_task = list(Task.objects.filter(project=project).order_by("id").values_list("sample__external_id", flat=True))
    assert by_sample == by_task == ["s5", "s1", "s9", "s3", "s7"]


def test_labeled_rows_become_final_labels_with_a_change_each_and_no_task(
    project: Project, manager: User, rows: Rows, monkeypatch: pytest.MonkeyPatch, run_on_commit: Any
) -> None:
    finalized: list[int] = []
    monkeypatch.setattr(events, "_labels_finalized", [finalized.append])
    with run_on_commit():
        result = samples_ingest(project=project, items=rows(3, labeled=True) + rows(2, start=10), actor=manager)
    assert result.created == 5
    assert finalized == [project.pk]
    state = stored(project)
    for i, name in enumerate(["s0", "s1", "s2"]):
        label = ["cat", "dog", "bird"][i]
        assert state[name]["status"] == SampleStatus.LABELED
        assert state[name]["tasks"] == []
        assert state[name]["label"] == [(label, 1.0, "import", 0)]
        assert state[name]["changes"] == [(None, label, "import", manager.pk, "")]
    for name in ["s10", "s11"]:
        assert state[name]["status"] == SampleStatus.QUEUED and state[name]["label"] == []


def test_no_new_label_no_labels_finalized(
    project: Project, rows: Rows, monkeypatch: pytest.MonkeyPatch, run_on_commit: Any
) -> None:
    samples_ingest(project=project, items=rows(2, labeled=True), actor=None)
    finalized: list[int] = []
    monkeypatch.setattr(events, "_labels_finalized", [finalized.append])
    with run_on_commit():
        samples_ingest(project=project, items=rows(2, labeled=True) + rows(2, start=5), actor=None)
    assert finalized == []


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least_confidence"])
def test_each_unlabeled_sample_gets_one_pending_task_ranked_by_the_projects_strategy(
    manager: User, rows: Rows, strategy: str
) -> None:
    project = project_create(
        creator=manager,
        name="P",
        labels=["cat", "dog", "bird"],
        schema={"x": "numeric", "colour": "categorical", "note": "text"},
        overlap=2,
        settings={"selection": {"strategy": strategy}},
    )
    items = rows(6) + rows(2, start=20, probabilities=False)
    samples_ingest(project=project, items=items, actor=None)
    probabilities = np.array(
        [row.probabilities for row in check_batch(items[:6], project.schema, project.labels).valid]
    )
    expected = uncertainty.score(strategy, probabilities)
    state = stored(project)
    for i in range(6):
        (task,) = state[f"s{i}"]["tasks"]
        assert task == (TaskKind.LABEL, Reason.UNCERTAINTY, pytest.approx(expected[i], abs=1e-12), 0, 2, 0, 0, None)
    for name in ["s20", "s21"]:
        assert state[name]["tasks"] == [(TaskKind.LABEL, Reason.RANDOM, 0.0, TaskStatus.PENDING, 2, 0, 0, None)]


def test_one_score_per_stored_sample(project: Project, rows: Rows) -> None:
    items = rows(2) + rows(1, start=10, probabilities=False) + rows(1, start=20, labeled=True)
    items[0]["model_version"] = "prod-7"
    items[1]["prediction"] = {"probabilities": {"dog": 0.5}}  # the rest spread over cat and bird
    samples_ingest(project=project, items=items, actor=None)
    assert SampleScore.objects.filter(project=project).count() == 4
    state = stored(project)
    (label, probabilities, version, uncertain, scored_by, scored) = state["s0"]["score"][0]
    assert (label, version, scored_by, scored) == ("cat", "prod-7", None, True)
    assert probabilities == pytest.approx([0.34, 0.33, 0.33])
    assert uncertain == pytest.approx(state["s0"]["tasks"][0][2])
    (label, probabilities, version, uncertain, _, scored) = state["s1"]["score"][0]
    assert (label, version, scored) == ("dog", "", True)
    assert probabilities == [0.25, 0.5, 0.25] and uncertain == pytest.approx(0.75)
    assert state["s10"]["score"] == [(None, None, "", None, None, False)]
    assert state["s20"]["score"][0][0] == "bird"  # a labeled sample keeps what production said


def test_samples_without_probabilities_are_scored_after_commit_once_a_model_exists(
    project: Project, rows: Rows, monkeypatch: pytest.MonkeyPatch, run_on_commit: Any
) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.score_samples, "delay", lambda *args: calls.append(args))
    with run_on_commit():
        samples_ingest(project=project, items=rows(2, probabilities=False), actor=None)
    assert calls == []  # no model yet: nothing to score with
    make_model_version(project)
    items = rows(1, start=10) + rows(2, start=20, probabilities=False) + rows(1, start=30, labeled=True)
    items[-1].pop("prediction")  # labeled: nothing to score, even without probabilities
    with run_on_commit():
        samples_ingest(project=project, items=items, actor=None)
        assert calls == []  # not before the commit
    ids = Sample.objects.filter(project=project, external_id__in=["s20", "s21"]).values_list("id", flat=True)
    assert calls == [(project.pk, min(ids), max(ids))]


def test_a_failure_stores_nothing(
    project: Project, manager: User, rows: Rows, monkeypatch: pytest.MonkeyPatch, run_on_commit: Any
) -> None:
    def fail(*args: Any) -> None:
        raise RuntimeError("disk full")

    finalized: list[int] = []
    monkeypatch.setattr(events, "_labels_finalized", [finalized.append])
    monkeypatch.setattr(ingest, "_scores_postgresql", fail)
    monkeypatch.setattr(ingest, "_scores_create", fail)
    with run_on_commit(), pytest.raises(RuntimeError):
        samples_ingest(project=project, items=rows(3) + rows(2, start=10, labeled=True), actor=manager)
    assert stored(project) == {}
    assert not Task.objects.filter(project=project).exists()
    assert not LabelChange.objects.filter(project=project).exists()
    assert finalized == []


def test_requests_larger_than_a_chunk(project: Project, rows: Rows, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_service, "CHUNK", 2)
    monkeypatch.setattr(ingest, "SCORES_PER_STATEMENT", 3)
    samples_ingest(project=project, items=rows(1, start=4), actor=None)
    items = rows(7) + rows(1, start=2) + rows(1, start=20, labeled=True)  # s4 known, s2 twice, across chunks
    result = samples_ingest(project=project, items=items, actor=None)
    assert (result.created, result.duplicates) == (7, 2)
    by_id = list(Sample.objects.filter(project=project).order_by("id").values_list("external_id", flat=True))
    assert by_id == ["s4", "s0", "s1", "s2", "s3", "s5", "s6", "s20"]
    assert Task.objects.filter(project=project).count() == 7
    assert SampleScore.objects.filter(project=project).count() == 8


def test_samples_add_bulk_reports_ids_per_item(project: Project) -> None:
    first = samples_add_bulk(project=project, items=[NewSample("a", {"x": 1}), NewSample("b", {"x": 2})], actor=None)
    again = samples_add_bulk(
        project=project, items=[NewSample("b", {"x": 3}), NewSample("c", {"x": 4}), NewSample("c", {})], actor=None
    )
    ids = dict(Sample.objects.filter(project=project).values_list("external_id", "id"))
    assert first.sample_ids == [ids["a"], ids["b"]]
    assert again.sample_ids == [None, ids["c"], None]
    assert (again.n_created, again.n_duplicates) == (1, 2)


# --- PostgreSQL: the bulk path against the ORM path, and concurrent requests ---------------------

needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's bulk path")


def _awkward_items() -> list[NewSample]:
    """Values where raw SQL and the ORM could part ways: offsets and microseconds, naive times,
    JSON null against SQL NULL, unicode, integers beyond 64 bits, empty data."""
    return [
        NewSample(
            "tz",
            {"x": 1.5, "note": "é ✓ \\ \" '"},
            datetime(2026, 3, 1, 12, 0, 0, 123456, INDIA),
        ),
        NewSample("naive", {"x": None}, datetime(2026, 3, 1, 12, 0), priority=0.125, reason=Reason.UNCERTAINTY),
        NewSample("hint", {"x": 2**70}, suggestion={"label": "cat", "confidence": 0.5}),
        NewSample("seed", {}, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), label="dog"),
        NewSample("float", {"x": 1e-7, "colour": "1e400"}, priority=1 / 3),
    ]


@pytest.mark.postgres
@needs_postgres
def test_the_postgresql_path_stores_what_the_orm_path_stores(
    project: Project, manager: User, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    orm = project_create(creator=manager, name="ORM", labels=project.labels, schema=project.schema)
    items: list[Any] = rows(4) + rows(2, start=10, labeled=True) + rows(2, start=20, probabilities=False)
    items[1]["observed_at"] = "2026-11-01T12:00:00.5-09:30"
    items[2]["prediction"] = {"label": "bird", "probabilities": {"cat": 0.2}}
    fast = samples_ingest(project=project, items=items, actor=manager)
    fast_bulk = samples_add_bulk(project=project, items=_awkward_items(), actor=manager)
    with monkeypatch.context() as patch:
        patch.setattr(sample_service, "_insert_postgresql", sample_service._insert_portable)
        patch.setattr(label_service, "_insert_postgresql", label_service._insert_portable)
        patch.setattr(ingest, "_scores_postgresql", ingest._scores_create)
        slow = samples_ingest(project=orm, items=items, actor=manager)
        slow_bulk = samples_add_bulk(project=orm, items=_awkward_items(), actor=manager)
    assert (fast.created, fast.duplicates, fast.rejected) == (slow.created, slow.duplicates, slow.rejected)
    assert (fast_bulk.n_created, fast_bulk.n_duplicates) == (slow_bulk.n_created, slow_bulk.n_duplicates)
    assert stored(project) == stored(orm)
    assert stored(project)["naive"]["observed_at"] == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.postgres
@needs_postgres
def test_labels_set_on_postgresql_writes_what_bulk_create_writes(
    project: Project, manager: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    orm = project_create(creator=manager, name="ORM", labels=project.labels, schema=project.schema)

    def run(target: Project) -> list[int]:
        added = samples_add_bulk(project=target, items=[NewSample(n, {}) for n in "abcd"], actor=None)
        a, b, c, d = (sample_id for sample_id in added.sample_ids if sample_id is not None)
        first = [
            LabelDecision(a, "cat", 1.0, LabelMethod.IMPORT, 0),
            LabelDecision(b, "dog", 1.0, LabelMethod.IMPORT, 0),
        ]
        second = [
            LabelDecision(a, "cat", 0.6, LabelMethod.MAJORITY, 3),  # same label: updated, no change recorded
            LabelDecision(b, "bird", 0.75, LabelMethod.REVIEW, 4, reason="reviewed"),
            LabelDecision(d, "dog", 0.5, LabelMethod.MAJORITY, 2),
            LabelDecision(c, "cat", 1.0, LabelMethod.MAJORITY, 1),
            LabelDecision(c, "bird", 0.9, LabelMethod.MAJORITY, 1),  # the last decision for a sample wins
        ]
        return [
            labels_set(project_id=target.pk, decisions=first, actor=manager),
            labels_set(project_id=target.pk, decisions=second, actor=None),
        ]

    fast = run(project)
    with monkeypatch.context() as patch:
        patch.setattr(label_service, "_insert_postgresql", label_service._insert_portable)
        slow = run(orm)
    assert fast == slow == [2, 3]
    assert stored(project) == stored(orm)

    def trail(target: Project) -> list[tuple[Any, ...]]:
        changes = LabelChange.objects.filter(project=target).order_by("id")
        return list(changes.values_list("sample__external_id", "old_label", "new_label", "method", "actor", "reason"))

    assert trail(project) == trail(orm)
    assert [row[0] for row in trail(project)] == ["a", "b", "b", "d", "c"]


def _ingest_in_thread(project: Project, items: list[dict[str, Any]], out: dict[str, Any], key: str) -> None:
    try:
        out[key] = samples_ingest(project=project, items=items, actor=None)
    except Exception as exc:  # reported to the test, which fails on it
        out[key] = exc
    finally:
        connections.close_all()


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_the_same_external_ids_in_opposite_orders_both_succeed(
    project: Project, rows: Rows
) -> None:
    items = rows(4000)
    out: dict[str, Any] = {}
    threads = [
        threading.Thread(target=_ingest_in_thread, args=(project, items, out, "forward")),
        threading.Thread(target=_ingest_in_thread, args=(project, items[::-1], out, "backward")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results = [out["forward"], out["backward"]]
    assert all(isinstance(r, IngestResult) for r in results), results
    assert sum(r.created for r in results) == 4000
    assert sum(r.duplicates for r in results) == 4000
    assert Sample.objects.filter(project=project).count() == 4000
    assert Task.objects.filter(project=project).count() == 4000
    assert SampleScore.objects.filter(project=project).count() == 4000


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_waits_for_a_concurrent_one_storing_the_same_ids_then_counts_them_as_duplicates(
    project: Project, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserted, release = threading.Event(), threading.Event()
    copy_scores = ingest._scores_postgresql

    def hold_first(*args: Any) -> None:
        if threading.current_thread().name == "first":
            inserted.set()  # its samples are in, not committed
            release.wait(timeout=60)
        copy_scores(*args)

    monkeypatch.setattr(ingest, "_scores_postgresql", hold_first)
    out: dict[str, Any] = {}
    first = threading.Thread(target=_ingest_in_thread, args=(project, rows(3), out, "first"), name="first")
    first.start()
    assert inserted.wait(timeout=60)
    second = threading.Thread(target=_ingest_in_thread, args=(project, rows(5), out, "second"), name="second")
    second.start()
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(waiting)
            if cursor.fetchone()[0]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the second request never waited for the first")
    assert "second" not in out  # it waits for the first instead of failing or going ahead
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert isinstance(out["first"], IngestResult) and out["first"].created == 3
    assert isinstance(out["second"], IngestResult), out["second"]
    assert (out["second"].created, out["second"].duplicates) == (2, 3)
    assert Task.objects.filter(project=project).count() == 5
