"""Review: the reviewer's page (labeling/web/review.py) and review_decide (labeling/services/review.py).
Reviewers see samples sent to review and samples whose answers disagreed, with every answer, and
decide them; each decision is kept in the sample's history with who and why."""

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from labeling import queue
from labeling.models import Label, LabelChange, LabelMethod, Project, Role, Sample, Task, TaskKind, TaskStatus
from labeling.services import review
from labeling.services.people import Conflict, member_set
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _answered(project: Project, people: list[User], answers: list[str], external_id: str = "r0") -> Sample:
    """One sample answered by ``people`` with ``answers`` through the queue."""
    samples_add_bulk(project=project, items=[NewSample(external_id=external_id, data={"x": 1.0})], actor=None)
    for user, label in zip(people, answers, strict=True):
        leased = queue.task_lease_next(project=project, user=user, role="annotator")
        assert leased is not None and leased.sample.external_id == external_id
        queue.annotation_submit(task_id=leased.task.pk, user=user, label=label, duration_ms=900)
    return Sample.objects.get(project=project, external_id=external_id)


@pytest.fixture
def crowd(make_user: Callable[..., User], project: Project) -> list[User]:
    people = [make_user(f"ann{i}") for i in range(3)]
    for user in people:
        member_set(project=project, user=user, role=Role.ANNOTATOR)
    return people


@pytest.fixture
def reviewer(make_user: Callable[..., User], project: Project) -> User:
    user = make_user("rev")
    member_set(project=project, user=user, role=Role.REVIEWER)
    return user


def test_sent_to_review_shows_every_answer_and_a_decision_is_kept_with_who_and_why(
    project: Project, crowd: list[User], reviewer: User
) -> None:
    project.overlap = 2
    project.save(update_fields=["overlap"])
    sample = _answered(project, crowd[:2], ["cat", "dog"])
    review.review_request(project_id=project.pk, sample_ids=[sample.pk])
    task = Task.objects.get(sample=sample, kind=TaskKind.REVIEW, status=TaskStatus.PENDING)

    html = _client(reviewer).get(f"/projects/{project.pk}/review/").content.decode()
    assert f'data-task="{task.pk}"' in html and "answers disagree: 1 cat, 1 dog" in html
    assert "<td>ann0</td><td>cat</td><td>900 ms</td>" in html and "<td>ann1</td><td>dog</td>" in html

    url = f"/projects/{project.pk}/review/{task.pk}/decide/"
    response = _client(reviewer).post(url, {"label": "dog", "why": "the ears"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Decided: dog." in html and "Decided." in html and "“the ears”" in html and "by rev" in html
    label = Label.objects.get(sample=sample)
    assert (label.label, label.method, label.confidence) == ("dog", LabelMethod.REVIEW, 1.0)
    change = LabelChange.objects.filter(sample=sample).order_by("id").last()
    assert change is not None
    assert (change.new_label, change.method, change.actor_id, change.reason) == (
        "dog",
        LabelMethod.REVIEW,
        reviewer.pk,
        "the ears",
    )
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE
    assert "Nothing is waiting for review." in _client(reviewer).get(f"/projects/{project.pk}/review/").content.decode()
    with pytest.raises(Conflict):  # decided once
        review.review_decide(task_id=task.pk, reviewer=reviewer, label="cat", why="again")


def test_disagreements_can_be_decided_and_a_confirmation_is_kept_too(
    project: Project, crowd: list[User], reviewer: User
) -> None:
    project.overlap = 3
    project.save(update_fields=["overlap"])
    sample = _answered(project, crowd, ["cat", "cat", "dog"])
    label = Label.objects.get(sample=sample)
    assert (label.label, label.method) == ("cat", LabelMethod.MAJORITY)
    html = _client(reviewer).get(f"/projects/{project.pk}/review/?show=disagreements").content.decode()
    assert "answers disagree: 2 cat, 1 dog" in html
    done = Task.objects.get(sample=sample, kind=TaskKind.LABEL)
    before = LabelChange.objects.filter(sample=sample).count()
    response = _client(reviewer).post(
        f"/projects/{project.pk}/review/{done.pk}/decide/", {"label": "cat", "why": "checked: cat"}
    )
    assert response.status_code == 302  # without htmx: back to the list
    assert LabelChange.objects.filter(sample=sample).count() == before + 1  # a confirmation is a decision
    assert Label.objects.get(sample=sample).method == LabelMethod.REVIEW
    html = _client(reviewer).get(f"/projects/{project.pk}/review/?show=disagreements").content.decode()
    assert "No disagreements to look at." in html  # decided by a reviewer since


def test_a_decision_needs_a_label_of_the_project_and_a_reason(
    project: Project, crowd: list[User], reviewer: User
) -> None:
    sample = _answered(project, crowd[:1], ["cat"])
    review.review_request(project_id=project.pk, sample_ids=[sample.pk])
    task = Task.objects.get(sample=sample, kind=TaskKind.REVIEW)
    url = f"/projects/{project.pk}/review/{task.pk}/decide/"
    client = _client(reviewer)
    cases = [
        ({"label": "fish", "why": "x"}, "Choose one"),
        ({"label": "dog", "why": "  "}, "Say why"),
        ({"label": "dog", "why": "nul \x00 in it"}, "Say why"),
    ]
    for body, why in cases:
        response = client.post(url, body, headers={"HX-Request": "true"})
        assert response.status_code == 200 and response["X-Review-Status"] == "400"
        assert why in response.content.decode()
    assert Label.objects.get(sample=sample).method == LabelMethod.MAJORITY
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING


def test_only_reviewers_and_managers_review(
    project: Project, crowd: list[User], reviewer: User, manager: User, outsider: User
) -> None:
    sample = _answered(project, crowd[:1], ["cat"])
    review.review_request(project_id=project.pk, sample_ids=[sample.pk])
    task = Task.objects.get(sample=sample, kind=TaskKind.REVIEW)
    for user, status in [(crowd[0], 404), (outsider, 404), (reviewer, 200), (manager, 200)]:
        assert _client(user).get(f"/projects/{project.pk}/review/").status_code == status
    for user in [crowd[0], outsider]:
        post = _client(user).post(f"/projects/{project.pk}/review/{task.pk}/decide/", {"label": "dog", "why": "x"})
        assert post.status_code == 404
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING
    # A task of another project named under this one is not found either.
    other = Project.objects.get(name="Other")
    assert _client(reviewer).post(f"/projects/{other.pk}/review/{task.pk}/decide/", {}).status_code == 404


def test_the_annotator_desk_never_hands_review_tasks(project: Project, crowd: list[User], reviewer: User) -> None:
    sample = _answered(project, crowd[:1], ["cat"])
    review.review_request(project_id=project.pk, sample_ids=[sample.pk])
    html = _client(reviewer).get(f"/projects/{project.pk}/label/").content.decode()
    assert "Nothing left to label" in html  # the only pending task is a review: decided on the review page
    leased = queue.task_lease_next(project=project, user=reviewer, role=Role.REVIEWER)
    assert leased is not None and leased.task.kind == TaskKind.REVIEW  # the API hands it to reviewers
    assert queue.task_lease_next(project=project, user=crowd[1], role=Role.ANNOTATOR) is None
