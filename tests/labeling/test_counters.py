"""The project's counters (labeling/services/counters.py, kept by the triggers of migration 0005):
every change of what they count moves them in the same transaction, whoever makes it."""

from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from labeling import queue
from labeling.models import Label, Project, Role, Sample, Task, TaskStatus
from labeling.services import review
from labeling.services.counters import counters_rebuild, project_counters
from labeling.services.people import member_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk
from tests.labeling.test_queue import make_gold

pytestmark = pytest.mark.django_db


def _true_counts(project: Project) -> dict[str, int]:
    pending = Counter(Task.objects.filter(project=project, status=TaskStatus.PENDING).values_list("kind", flat=True))
    return {
        "samples": Sample.objects.filter(project=project).count(),
        "labeled": Label.objects.filter(project=project).count(),
        "queued": sum(pending.values()),
        "queued_label": pending["label"],
        "queued_gold": pending["gold"],
        "queued_review": pending["review"],
    }


def _assert_exact(project: Project) -> dict[str, int]:
    counters = project_counters(project_id=project.pk)
    assert counters == _true_counts(project)
    return counters


def test_counters_follow_ingest_answers_skips_reviews_gold_and_undo(manager: User, make_user: Any) -> None:
    project = project_create(creator=manager, name="K", labels=["a", "b"], schema={"x": "numeric"})
    items = [NewSample(external_id=f"k{i}", data={"x": i}, priority=i) for i in range(6)]
    items.append(NewSample(external_id="seed", data={"x": 9}, label="a"))  # known label: not queued
    samples_add_bulk(project=project, items=items, actor=None)
    assert _assert_exact(project) == {
        "samples": 7,
        "labeled": 1,
        "queued": 6,
        "queued_label": 6,
        "queued_gold": 0,
        "queued_review": 0,
    }
    user = make_user("ann")
    member_set(project=project, user=user, role=Role.ANNOTATOR)
    leased = queue.task_lease_next(project=project, user=user, role="annotator")
    assert leased is not None
    queue.annotation_submit(task_id=leased.task.pk, user=user, label="b")
    assert _assert_exact(project)["queued_label"] == 5
    queue.annotation_undo(task_id=leased.task.pk, user=user)
    assert _assert_exact(project)["labeled"] == 1
    skipped = queue.task_lease_next(project=project, user=user, role="annotator")
    assert skipped is not None
    queue.task_skip(task_id=skipped.task.pk, user=user)  # still pending: counts do not move
    _assert_exact(project)
    sample_ids = list(Sample.objects.filter(project=project).order_by("id").values_list("pk", flat=True))
    review.review_request(project_id=project.pk, sample_ids=sample_ids[-1:])
    make_gold(project, sample_ids[:2], "a")
    counters = _assert_exact(project)
    assert (counters["queued_review"], counters["queued_gold"], counters["queued_label"]) == (1, 2, 4)
    review_task = Task.objects.get(project=project, kind="review")
    review.review_decide(task_id=review_task.pk, reviewer=manager, label="b", why="looked")
    _assert_exact(project)
    assert counters_rebuild(project_id=project.pk) == _true_counts(project)


def test_counters_follow_raw_sql_and_deletes(manager: User) -> None:
    project = project_create(creator=manager, name="R", labels=["a", "b"], schema={"x": "numeric"})
    other = project_create(creator=manager, name="S", labels=["a", "b"], schema={"x": "numeric"})
    for p in (project, other):
        samples_add_bulk(project=p, items=[NewSample(external_id=f"r{i}", data={"x": i}) for i in range(4)], actor=None)
    with transaction.atomic(), connection.cursor() as cursor:
        # Another app's bulk SQL, e.g. cancelling tasks, is counted all the same.
        cursor.execute("UPDATE labeling_task SET status = %s WHERE project_id = %s", [TaskStatus.CANCELLED, project.pk])
    assert _assert_exact(project)["queued"] == 0
    Sample.objects.filter(project=project, external_id="r0").delete()
    assert _assert_exact(project)["samples"] == 3
    project.delete()  # the cascade may delete the counters first: no error, nothing left behind
    assert project_counters(project_id=project.pk)["samples"] == 0
    assert _assert_exact(other)["queued"] == 4


@pytest.mark.postgres
def test_a_connection_adds_to_its_own_shard(manager: User, make_user: Any) -> None:
    """On PostgreSQL each connection writes one shard (its process id modulo 32), so concurrent
    answers on different connections do not wait for each other's counter rows."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite keeps shard 0")
    from labeling.models import ProjectCounter

    project = project_create(creator=manager, name="P", labels=["a", "b"], schema={"x": "numeric"})
    samples_add_bulk(project=project, items=[NewSample(external_id="p0", data={"x": 1}, priority=1)], actor=None)
    user = make_user("ann")
    member_set(project=project, user=user, role=Role.ANNOTATOR)
    leased = queue.task_lease_next(project=project, user=user, role="annotator")
    assert leased is not None
    queue.annotation_submit(task_id=leased.task.pk, user=user, label="b")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid() %% 32", [])
        (mine,) = cursor.fetchone()
    labeled = ProjectCounter.objects.filter(project=project, name="labeled")
    assert list(labeled.values_list("shard", "value")) == [(mine, 1)]
    assert _assert_exact(project)["queued_label"] == 0
