"""The trail of final-label changes is append-only, down to the database."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction

from labeling import queue
from labeling.models import Annotation, LabelChange, Project, Role
from labeling.services.people import member_set
from labeling.services.samples import NewSample, samples_add_bulk


def _answered(project: Project, user: User) -> LabelChange:
    samples_add_bulk(project=project, items=[NewSample(external_id="t1", data={"x": 1.0})], actor=None)
    member_set(project=project, user=user, role=Role.ANNOTATOR)
    leased = queue.task_lease_next(project=project, user=user, role="annotator")
    assert leased is not None
    annotation = queue.annotation_submit(task_id=leased.task.pk, user=user, label="dog", duration_ms=1200)
    assert Annotation.objects.get(pk=annotation.pk).project_id == project.pk
    return LabelChange.objects.get(sample=leased.task.sample_id)


def test_a_change_records_who_when_old_new(project: Project, make_user: Any) -> None:
    change = _answered(project, make_user("ann"))
    assert (change.old_label, change.new_label, change.method) == (None, "dog", "majority")
    assert (change.actor.username if change.actor else None, change.reason) == ("ann", "the one answer")
    assert change.created_at is not None


@pytest.mark.postgres
def test_the_database_refuses_updates_and_deletes(project: Project, make_user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's")
    change = _answered(project, make_user("ann"))
    for statement in (
        "UPDATE labeling_labelchange SET new_label = 'cat' WHERE id = %s",
        "DELETE FROM labeling_labelchange WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [change.pk])
    change.refresh_from_db()
    assert change.new_label == "dog"


def test_every_change_of_a_final_label_is_in_the_trail_and_on_the_sample_page(
    project: Project, make_user: Any, manager: User
) -> None:
    from django.test import Client

    from labeling.models import Task, TaskKind
    from labeling.services.review import review_decide, review_request

    samples_add_bulk(project=project, items=[NewSample(external_id="known", data={"x": 2.0}, label="cat")], actor=None)
    change = _answered(project, make_user("ann"))  # t1: majority, dog
    review_request(project_id=project.pk, sample_ids=[change.sample_id])
    review = Task.objects.get(sample_id=change.sample_id, kind=TaskKind.REVIEW)
    review_decide(task_id=review.pk, reviewer=manager, label="bird", why="the beak")
    trail = list(
        LabelChange.objects.filter(project=project)
        .order_by("id")
        .values_list("sample__external_id", "old_label", "new_label", "method", "actor__username", "reason")
    )
    assert trail == [
        ("known", None, "cat", "import", None, ""),
        ("t1", None, "dog", "majority", "ann", "the one answer"),
        ("t1", "dog", "bird", "review", "manager", "the beak"),
    ]
    browser = Client()
    browser.force_login(manager)
    html = browser.get(f"/projects/{project.pk}/samples/t1/").content.decode()
    rows = html.split("History of the final label", 1)[1].split("</table>", 1)[0]
    assert rows.index("majority") < rows.index("review") and "the beak" in rows and "manager" in rows
