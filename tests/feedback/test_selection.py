"""feedback/selection.py on the database (SQLite and PostgreSQL): re-ranking by the newest model with
budgets, the floor, manual pushes, and that the cost does not grow by a query per sample."""

import itertools
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feedback import ranking, selection
from feedback.ingest import samples_ingest
from feedback.models import ModelVersion, SampleScore
from labeling import queue, selectors
from labeling.models import Project, Reason, Role, Sample, SampleStatus, Task, TaskStatus
from labeling.services.people import member_set
from labeling.services.projects import project_update
from labeling.services.review import review_request

pytestmark = pytest.mark.django_db
BUDGETS = {"uncertainty": 0.6, "drift": 0.0, "diversity": 0.2, "random": 0.2}


def _settings(project: Project, **selection_settings: Any) -> Project:
    return project_update(
        project_id=project.pk,
        changes={"selection": selection_settings, "retrain": {"min_new_labels": 10**6}},
    )


def _model(project: Project, rows: Any, run_on_commit: Any) -> ModelVersion:
    """Seed labels, then one training run through the real services (Celery eager), which re-scores."""
    samples_ingest(project=project, items=rows(45, labeled=True), actor=None)
    project_update(project_id=project.pk, changes={"retrain": {"min_new_labels": 1}})
    with run_on_commit():
        samples_ingest(project=project, items=rows(1, start=45, labeled=True), actor=None)
    project_update(project_id=project.pk, changes={"retrain": {"min_new_labels": 10**6}})
    return ModelVersion.objects.get(project=project)


def _pending(project: Project) -> list[Task]:
    return list(Task.objects.filter(project=project, status=TaskStatus.PENDING).order_by("-priority", "id"))


def test_rescore_mixes_reasons_by_budget_batch_by_batch(project: Project, rows: Any, run_on_commit: Any) -> None:
    _settings(project, budgets=BUDGETS, batch_size=10)
    samples_ingest(project=project, items=rows(120, start=1000), actor=None)
    model = _model(project, rows, run_on_commit)
    order = _pending(project)
    assert len(order) == 120
    head = order[: ranking.HEAD_BATCHES * 10]
    for start in range(0, len(head), 10):
        reasons = [t.reason for t in head[start : start + 10]]
        assert sorted(reasons) == sorted(["uncertainty"] * 6 + ["diversity"] * 2 + ["random"] * 2)
    priorities = [t.priority for t in head]
    assert all(a > b for a, b in itertools.pairwise(priorities))
    assert priorities[-1] > 1.0 and priorities[0] <= ranking.HEAD_TOP
    # The tail is ordered by the model's uncertainty, below the head.
    tail = order[len(head) :]
    assert all(t.priority <= 1.0 and t.reason == "uncertainty" for t in tail)
    written = SampleScore.objects.filter(sample_id__in=[t.sample_id for t in order])
    assert all(s.scored_by_id == model.pk and s.uncertainty is not None for s in written)
    assert all(s.suggestion and s.suggestion["label"] in project.labels for s in Sample.objects.filter(status=1))


def test_the_queue_hands_out_in_the_order_it_shows(project: Project, rows: Any, run_on_commit: Any) -> None:
    _settings(project, budgets=BUDGETS, batch_size=5)
    samples_ingest(project=project, items=rows(30, start=1000), actor=None)
    _model(project, rows, run_on_commit)
    shown = [(t.pk, t.reason) for t in selectors.queue_list(project=project, limit=12)]
    annotator = User.objects.create_user("a1", password="x")
    member_set(project=project, user=annotator, role=Role.ANNOTATOR)
    handed = []
    for _ in range(12):
        leased = queue.task_lease_next(project=project, user=annotator, role=Role.ANNOTATOR)
        assert leased is not None
        handed.append((leased.task.pk, leased.task.reason))
        queue.annotation_submit(task_id=leased.task.pk, user=annotator, label="cat")
    assert handed == shown


def test_rescore_costs_no_query_per_sample(project: Project, rows: Any, run_on_commit: Any) -> None:
    _settings(project, batch_size=5)
    samples_ingest(project=project, items=rows(40, start=1000), actor=None)
    model = _model(project, rows, run_on_commit)

    def queries() -> int:
        # Every row changes, so that both runs write every table.
        Task.objects.filter(project=project).update(priority=0.0, reason=Reason.RANDOM)
        with CaptureQueriesContext(connection) as captured:
            selection.project_rescore(project_id=project.pk, model_version_id=model.pk)
        return len(captured.captured_queries)

    small = queries()
    samples_ingest(project=project, items=rows(400, start=5000), actor=None)
    assert queries() == small


def test_rerank_moves_the_old_head_down(project: Project, rows: Any, run_on_commit: Any) -> None:
    _settings(project, batch_size=4, budgets={"uncertainty": 1.0}, diverse=False)
    samples_ingest(project=project, items=rows(120, start=1000), actor=None)
    _model(project, rows, run_on_commit)
    head = [t.sample_id for t in _pending(project)[: ranking.HEAD_BATCHES * 4]]
    # Production's scores rank differently: re-ranking without a model must demote the old head.
    SampleScore.objects.filter(sample_id__in=head).update(uncertainty=0.0)
    result = selection._rerank(Project.objects.get(pk=project.pk), None)  # production scores, no model
    assert result.head == ranking.HEAD_BATCHES * 4
    now_head = {t.sample_id for t in _pending(project)[: ranking.HEAD_BATCHES * 4]}
    assert now_head.isdisjoint(head)
    assert all(t.priority <= 1.0 for t in Task.objects.filter(sample_id__in=head, status=TaskStatus.PENDING))


def test_a_rescore_rewrites_the_scores_of_the_whole_head_even_where_its_order_holds(
    project: Project, rows: Any, run_on_commit: Any
) -> None:
    """The head keeps its tasks' priorities when a model ranks it the same way (a rollback, the
    same model again), but its samples' scores must still be the model's: the queue's first
    hand-outs show whose uncertainty put them there."""
    _settings(project, batch_size=4, budgets={"uncertainty": 1.0}, diverse=False)
    samples_ingest(project=project, items=rows(120, start=1000), actor=None)
    model = _model(project, rows, run_on_commit)
    head = [t.sample_id for t in _pending(project)[: ranking.HEAD_BATCHES * 4]]
    expected = dict(SampleScore.objects.filter(sample_id__in=head).values_list("sample_id", "uncertainty"))
    SampleScore.objects.filter(sample_id__in=head).update(uncertainty=0.123, scored_by=None)
    selection.project_rescore(project_id=project.pk, model_version_id=model.pk)
    assert [t.sample_id for t in _pending(project)[: len(head)]] == head  # the order held
    rewritten = SampleScore.objects.filter(sample_id__in=head)
    assert all(s.scored_by_id == model.pk for s in rewritten)
    assert {s.sample_id: s.uncertainty for s in rewritten} == pytest.approx(expected)


def test_the_floor_leaves_the_least_useful_out_and_lets_them_back(
    project: Project, rows: Any, run_on_commit: Any, client_for: Any, manager: User
) -> None:
    _settings(project, batch_size=5)
    samples_ingest(project=project, items=rows(80, start=1000), actor=None)
    model = _model(project, rows, run_on_commit)
    scores = dict(
        SampleScore.objects.filter(sample__status=SampleStatus.QUEUED).values_list("sample_id", "uncertainty")
    )
    floor = float(np.median(list(scores.values())))
    _settings(project, floor=floor)
    selection.project_rescore(project_id=project.pk, model_version_id=model.pk)
    pending = _pending(project)
    head = ranking.head_size_for(80, 5)
    assert len(pending) < 80
    assert all(t.priority >= floor for t in pending)
    dropped = Sample.objects.filter(project=project, status=SampleStatus.UNLABELED)
    assert dropped.count() == 80 - len(pending) and dropped.count() > 0
    assert len(pending) >= head
    assert client_for(manager).get(f"/api/projects/{project.pk}/").json()["counts"]["queued"] == len(pending)
    _settings(project, floor=None)
    selection.project_rescore(project_id=project.pk, model_version_id=model.pk)
    assert len(_pending(project)) == 80
    assert not Sample.objects.filter(project=project, status=SampleStatus.UNLABELED).exists()


def test_manual_push_goes_first_below_reviews_and_survives_rescores(
    project: Project, rows: Any, run_on_commit: Any
) -> None:
    _settings(project, batch_size=5)
    samples_ingest(project=project, items=rows(30, start=1000), actor=None)
    model = _model(project, rows, run_on_commit)
    result = selection.queue_manual_push(project=project, external_ids=["s1020", "s1003", "nope", "s3", "s1020"])
    assert result.pushed == ["s1020", "s1003"] and result.unknown == ["nope"] and result.labeled == ["s3"]
    labeled = Sample.objects.get(project=project, external_id="s3")
    review_request(project_id=project.pk, sample_ids=[labeled.pk])
    selection.project_rescore(project_id=project.pk, model_version_id=model.pk)
    order = [(t.sample.external_id, t.reason) for t in selectors.queue_list(project=project, limit=4)]
    assert order[:3] == [("s3", "review"), ("s1020", "manual"), ("s1003", "manual")]
    assert order[3][1] != "manual"
    # By filter: a data field's range and the status, in id order, up to a limit.
    by_filter = selection.queue_manual_push(
        project=project, filter_spec={"status": "queued", "data": {"x": {"gte": 20}, "colour": ["blue"]}}, limit=3
    )
    assert len(by_filter.pushed) == 3
    chosen = Sample.objects.filter(project=project, external_id__in=by_filter.pushed)
    assert all(s.data["x"] >= 20 and s.data["colour"] == "blue" for s in chosen)
    assert set(Task.objects.filter(sample__in=chosen, status=0).values_list("reason", flat=True)) == {"manual"}
    for bad in ({"data": {"nope": 1}}, {"status": "labeled"}, {"data": {"x": {"between": 1}}}, {"other": 1}):
        with pytest.raises(selection.PushError):
            selection.queue_manual_push(project=project, filter_spec=bad)
    with pytest.raises(selection.PushError):
        selection.queue_manual_push(project=project)


def test_manual_push_queues_a_sample_the_floor_left_out(project: Project, rows: Any, run_on_commit: Any) -> None:
    _settings(project, batch_size=5)
    samples_ingest(project=project, items=rows(100, start=1000), actor=None)
    model = _model(project, rows, run_on_commit)
    _settings(project, floor=1.0)
    selection.project_rescore(project_id=project.pk, model_version_id=model.pk)
    out = Sample.objects.filter(project=project, status=SampleStatus.UNLABELED).order_by("pk").first()
    assert out is not None
    assert selection.queue_manual_push(project=project, external_ids=[out.external_id]).pushed == [out.external_id]
    out.refresh_from_db()
    assert out.status == SampleStatus.QUEUED
    task = Task.objects.get(sample=out, status=TaskStatus.PENDING)
    assert task.reason == Reason.MANUAL and task.priority == pytest.approx(selection.MANUAL_PRIORITY)
    selection.project_rescore(project_id=project.pk, model_version_id=model.pk)
    assert Task.objects.get(sample=out, status=TaskStatus.PENDING).reason == Reason.MANUAL


def test_random_strategy_names_the_queue_random(project: Project, rows: Any, run_on_commit: Any) -> None:
    _settings(project, strategy="random", budgets={"uncertainty": 1.0}, batch_size=5)
    samples_ingest(project=project, items=rows(20, start=1000), actor=None)
    _model(project, rows, run_on_commit)
    assert {t.reason for t in _pending(project)} == {"random"}


@pytest.mark.postgres
def test_copy_reader_matches_the_orm_reader_on_awkward_values(project: Project) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the COPY reader is PostgreSQL's")
    awkward = [
        {"x": 1.5, "colour": "red", "note": 'a "quoted", comma'},
        {"colour": "", "note": "two\nlines"},  # x missing; an empty category is not a missing one
        {"x": -0.0, "note": ""},  # colour missing
        {"x": 1e300, "colour": "NULL", "note": "NA é ünïcode \\N"},
    ]
    items = [{"external_id": f"w{i}", "data": data} for i, data in enumerate(awkward)]
    samples_ingest(project=project, items=items, actor=None)
    fast = selection.pool_read(project=Project.objects.get(pk=project.pk))
    portable = selection._read_pool_portable(Project.objects.get(pk=project.pk), None, None)
    assert fast.sample_ids.tolist() == portable.sample_ids.tolist()
    for name in ("priority", "drift", "stored_uncertainty"):
        assert np.array_equal(getattr(fast, name), getattr(portable, name), equal_nan=True), name
    assert fast.reason.tolist() == portable.reason.tolist() and fast.has_task.all()

    def plain(matrix: Any) -> list[list[Any]]:
        return [["nan" if isinstance(v, float) and np.isnan(v) else v for v in row] for row in matrix.tolist()]

    assert plain(fast.matrix) == plain(portable.matrix)
    assert sum(row.count("two\nlines") + row.count("") + row.count("\x00missing") for row in plain(fast.matrix)) == 4
