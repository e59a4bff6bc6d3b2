"""The queue through the API: next, answer, skip, undo, the queue list, and review (list, decide).
Every call on a project also answers 404 to a member of another project."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from labeling.models import Annotation, Label, LabelChange, LabelMethod, Project, Role, Sample, Task, TaskKind
from labeling.services import review
from labeling.services.people import member_set
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = pytest.mark.django_db


def _fill(project: Project, n: int) -> None:
    items = [
        NewSample(
            external_id=f"q{i}",
            data={"x": float(i), "colour": "red", "note": "n"},
            priority=1 - i / 10,
            reason="uncertainty",
            suggestion={"label": "dog", "confidence": 0.7},
        )
        for i in range(n)
    ]
    samples_add_bulk(project=project, items=items, actor=None)


def test_next_answer_skip_and_undo(project: Project, annotator: User, outsider: User, client_for: Any) -> None:
    _fill(project, 3)
    api, stranger = client_for(annotator), client_for(outsider)
    assert stranger.post(f"/api/projects/{project.pk}/tasks/next/").status_code == 404
    first = api.post(f"/api/projects/{project.pk}/tasks/next/")
    assert first.status_code == 200
    body = first.json()
    assert set(body) >= {"task_id", "external_id", "data", "reason", "suggestion", "lease_expires_at"}
    assert (body["external_id"], body["reason"], body["suggestion"]) == ("q0", "uncertainty", None)  # hidden

    task = body["task_id"]
    assert stranger.post(f"/api/tasks/{task}/annotations/", {"label": "cat"}, format="json").status_code == 404
    assert api.post(f"/api/tasks/{task}/annotations/", {"label": "fish"}, format="json").status_code == 400
    assert api.post(f"/api/tasks/{task}/annotations/", {"label": "cat"}, format="json").status_code == 201
    assert api.post(f"/api/tasks/{task}/annotations/", {"label": "cat"}, format="json").status_code == 409

    assert stranger.post(f"/api/tasks/{task}/undo/").status_code == 404
    undone = api.post(f"/api/tasks/{task}/undo/")
    assert undone.status_code == 200 and undone.json()["task_id"] == task
    assert not Annotation.objects.exists()
    assert api.post(f"/api/tasks/{task}/undo/").status_code == 409  # nothing left to undo
    assert api.post(f"/api/tasks/{task}/annotations/", {"label": "dog"}, format="json").status_code == 201

    second = api.post(f"/api/projects/{project.pk}/tasks/next/").json()
    assert stranger.post(f"/api/tasks/{second['task_id']}/skip/").status_code == 404
    assert api.post(f"/api/tasks/{second['task_id']}/skip/").status_code == 204
    assert api.post(f"/api/tasks/{second['task_id']}/skip/").status_code == 409
    third = api.post(f"/api/projects/{project.pk}/tasks/next/").json()
    assert third["external_id"] == "q2"
    api.post(f"/api/tasks/{third['task_id']}/annotations/", {"label": "cat"}, format="json")
    assert api.post(f"/api/projects/{project.pk}/tasks/next/").status_code == 204  # the skipped one is not back


def test_suggestion_shown_when_the_project_says_so(project: Project, annotator: User, client_for: Any) -> None:
    project.settings = {**project.settings, "queue": {"show_suggestion": True}}
    project.save(update_fields=["settings"])
    _fill(project, 1)
    body = client_for(annotator).post(f"/api/projects/{project.pk}/tasks/next/").json()
    assert body["suggestion"] == {"label": "dog", "confidence": 0.7}


def test_reviews_are_listed_and_decided_by_reviewers(
    project: Project, annotator: User, outsider: User, make_user: Any, client_for: Any
) -> None:
    _fill(project, 1)
    api = client_for(annotator)
    task = api.post(f"/api/projects/{project.pk}/tasks/next/").json()["task_id"]
    api.post(f"/api/tasks/{task}/annotations/", {"label": "cat", "duration_ms": 1500}, format="json")
    sample = Sample.objects.get(external_id="q0")
    review.review_request(project_id=project.pk, sample_ids=[sample.pk])
    reviewer = make_user("rev")
    member_set(project=project, user=reviewer, role=Role.REVIEWER)
    boss = client_for(reviewer)

    assert client_for(outsider).get(f"/api/projects/{project.pk}/reviews/").status_code == 404
    assert api.get(f"/api/projects/{project.pk}/reviews/").status_code == 403
    assert boss.get(f"/api/projects/{project.pk}/reviews/?kind=nope").status_code == 400
    (item,) = boss.get(f"/api/projects/{project.pk}/reviews/").json()
    assert item["kind"] == "review" and item["external_id"] == "q0"
    assert [(a["username"], a["label"], a["duration_ms"]) for a in item["answers"]] == [("annotator", "cat", 1500)]
    assert item["label"]["label"] == "cat" and item["history"][0]["method"] == "majority"

    url = f"/api/tasks/{item['task_id']}/review/"
    assert client_for(outsider).post(url, {"label": "dog", "why": "x"}, format="json").status_code == 404
    assert api.post(url, {"label": "dog", "why": "x"}, format="json").status_code == 403
    assert boss.post(url, {"label": "fish", "why": "x"}, format="json").status_code == 400
    assert boss.post(url, {"label": "dog", "why": "   "}, format="json").status_code == 400
    decided = boss.post(url, {"label": "dog", "why": "tail"}, format="json")
    assert decided.status_code == 200
    assert decided.json() == {"external_id": "q0", "label": "dog", "confidence": 1.0, "method": "review"}
    assert boss.post(url, {"label": "dog", "why": "again"}, format="json").status_code == 409
    assert Label.objects.get(sample=sample).method == LabelMethod.REVIEW
    change = LabelChange.objects.filter(sample=sample).order_by("id").last()
    assert change is not None and (change.actor_id, change.reason) == (reviewer.pk, "tail")
    assert not Task.objects.filter(sample=sample, kind=TaskKind.REVIEW, status=0).exists()


@pytest.mark.postgres
def test_a_fast_hand_out_commits_asynchronously_and_an_answer_durably(project: Project, annotator: User) -> None:
    """The fast path's hand-out turns synchronous_commit off for its own transaction (a lease lost
    in a crash only returns its task to the queue); answers keep it on."""
    from datetime import UTC, datetime
    from hashlib import sha256

    from django.db import connection

    from labeling.api import fast
    from labeling.services.people import token_issue

    if connection.vendor != "postgresql":
        pytest.skip("the fast path is PostgreSQL's")
    _fill(project, 1)
    key, _ = token_issue(user=annotator)
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
        handed = fast._next(project.pk, sha256(key.encode()).hexdigest(), datetime.now(UTC))
        assert handed is not None
        cursor.execute("SHOW synchronous_commit")  # the test's transaction is the hand-out's here
        assert cursor.fetchone()[0] == "off"
    assert "synchronous_commit" not in fast.FAST_ANSWER
