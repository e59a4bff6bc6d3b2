"""The queue: leases, overlap, skips, expiry, consensus on completion."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from labeling import queue
from labeling.models import Annotation, Label, LabelChange, Lease, LeaseStatus, Project, Role, Sample, Task, TaskStatus
from labeling.services.people import Conflict, member_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk


def _project(manager: User, overlap: int = 1) -> Project:
    return project_create(creator=manager, name="Q", labels=["a", "b", "c"], schema={"x": "numeric"}, overlap=overlap)


def _add(project: Project, priorities: list[float]) -> list[int]:
    items = [
        NewSample(external_id=f"e{i}", data={"x": i}, priority=p, reason="uncertainty")
        for i, p in enumerate(priorities)
    ]
    added = samples_add_bulk(project=project, items=items, actor=None)
    return [i for i in added.sample_ids if i is not None]


def _people(make_user: Any, project: Project, n: int) -> list[User]:
    users = [make_user(f"u{i}") for i in range(n)]
    for user in users:
        member_set(project=project, user=user, role=Role.ANNOTATOR)
    return users


def test_hands_out_by_priority_and_never_the_same_task_twice(manager: User, make_user: Any) -> None:
    project = _project(manager)
    _add(project, [0.2, 0.9, 0.5])
    first, second = _people(make_user, project, 2)
    a = queue.task_lease_next(project=project, user=first, role="annotator")
    b = queue.task_lease_next(project=project, user=second, role="annotator")
    c = queue.task_lease_next(project=project, user=first, role="annotator")
    assert a and b and c
    assert [a.task.priority, b.task.priority, c.task.priority] == [0.9, 0.5, 0.2]
    assert queue.task_lease_next(project=project, user=second, role="annotator") is None


def test_overlap_needs_k_different_annotators_then_majority(manager: User, make_user: Any) -> None:
    project = _project(manager, overlap=3)
    (sample_id,) = _add(project, [0.5])
    users = _people(make_user, project, 4)
    for user, answer in zip(users[:3], ["b", "a", "b"], strict=True):
        leased = queue.task_lease_next(project=project, user=user, role="annotator")
        assert leased is not None
        assert queue.task_lease_next(project=project, user=user, role="annotator") is None  # not twice to one person
        queue.annotation_submit(task_id=leased.task.pk, user=user, label=answer)
    task = Task.objects.get(sample_id=sample_id)
    assert task.status == TaskStatus.DONE and task.n_answers == 3
    label = Label.objects.get(sample_id=sample_id)
    assert (label.label, label.method, label.n_annotations) == ("b", "majority", 3)
    assert label.confidence == pytest.approx(2 / 3)
    assert Sample.objects.get(pk=sample_id).status == 2
    assert LabelChange.objects.filter(sample_id=sample_id).count() == 1
    assert queue.task_lease_next(project=project, user=users[3], role="annotator") is None


def test_live_leases_fill_the_slots(manager: User, make_user: Any) -> None:
    project = _project(manager, overlap=2)
    _add(project, [0.5])
    first, second, third = _people(make_user, project, 3)
    assert queue.task_lease_next(project=project, user=first, role="annotator")
    assert queue.task_lease_next(project=project, user=second, role="annotator")
    assert queue.task_lease_next(project=project, user=third, role="annotator") is None


def test_expired_lease_returns_the_task_and_its_answer_is_refused(manager: User, make_user: Any) -> None:
    project = _project(manager)
    _add(project, [0.5])
    first, second = _people(make_user, project, 2)
    leased = queue.task_lease_next(project=project, user=first, role="annotator")
    assert leased is not None
    past = timezone.now() - timedelta(seconds=1)
    Lease.objects.filter(task=leased.task, user=first).update(expires_at=past)
    Task.objects.filter(pk=leased.task.pk).update(lease_expiry=past)
    again = queue.task_lease_next(project=project, user=second, role="annotator")
    assert again is not None and again.task.pk == leased.task.pk
    assert Lease.objects.get(task=leased.task, user=first).status == LeaseStatus.EXPIRED
    with pytest.raises(Conflict):
        queue.annotation_submit(task_id=leased.task.pk, user=first, label="a")
    queue.annotation_submit(task_id=leased.task.pk, user=second, label="c")
    assert Label.objects.get(sample=leased.task.sample_id).label == "c"


def test_own_expired_lease_can_be_taken_again(manager: User, make_user: Any) -> None:
    project = _project(manager)
    _add(project, [0.5])
    (user,) = _people(make_user, project, 1)
    leased = queue.task_lease_next(project=project, user=user, role="annotator")
    assert leased is not None
    past = timezone.now() - timedelta(seconds=1)
    Lease.objects.filter(task=leased.task).update(expires_at=past)
    Task.objects.filter(pk=leased.task.pk).update(lease_expiry=past)
    again = queue.task_lease_next(project=project, user=user, role="annotator")
    assert again is not None and again.task.pk == leased.task.pk
    queue.annotation_submit(task_id=again.task.pk, user=user, label="b")
    assert Annotation.objects.filter(task=again.task).count() == 1


def test_skip_goes_to_someone_else_not_back(manager: User, make_user: Any) -> None:
    project = _project(manager)
    _add(project, [0.5])
    first, second = _people(make_user, project, 2)
    leased = queue.task_lease_next(project=project, user=first, role="annotator")
    assert leased is not None
    queue.task_skip(task_id=leased.task.pk, user=first)
    assert queue.task_lease_next(project=project, user=first, role="annotator") is None
    other = queue.task_lease_next(project=project, user=second, role="annotator")
    assert other is not None and other.task.pk == leased.task.pk
    with pytest.raises(Conflict):
        queue.task_skip(task_id=leased.task.pk, user=first)


def test_answer_twice_or_without_lease_conflicts(manager: User, make_user: Any) -> None:
    project = _project(manager, overlap=2)
    _add(project, [0.5])
    first, second = _people(make_user, project, 2)
    leased = queue.task_lease_next(project=project, user=first, role="annotator")
    assert leased is not None
    with pytest.raises(Conflict):
        queue.annotation_submit(task_id=leased.task.pk, user=second, label="a")
    queue.annotation_submit(task_id=leased.task.pk, user=first, label="a")
    with pytest.raises(Conflict):
        queue.annotation_submit(task_id=leased.task.pk, user=first, label="a")
    assert Annotation.objects.count() == 1


def test_review_tasks_only_for_reviewers(manager: User, make_user: Any) -> None:
    project = _project(manager)
    (sample_id,) = _add(project, [0.5])
    Task.objects.filter(sample_id=sample_id).update(kind="review")
    annotator, reviewer = make_user("ann"), make_user("rev")
    member_set(project=project, user=annotator, role=Role.ANNOTATOR)
    member_set(project=project, user=reviewer, role=Role.REVIEWER)
    assert queue.task_lease_next(project=project, user=annotator, role="annotator") is None
    assert queue.task_lease_next(project=project, user=reviewer, role="reviewer") is not None


def test_reprioritize_sets_pending_label_tasks_only(manager: User) -> None:
    project = _project(manager)
    ids = _add(project, [0.1, 0.2, 0.3])
    Task.objects.filter(sample_id=ids[2]).update(status=TaskStatus.DONE)
    updated = queue.tasks_reprioritize(
        project_id=project.pk, updates=[(ids[0], 0.95, "uncertainty"), (ids[2], 0.99, "drift")]
    )
    assert updated == 1
    assert Task.objects.get(sample_id=ids[0]).priority == 0.95
    assert Task.objects.get(sample_id=ids[2]).priority == 0.3
    other = project_create(creator=manager, name="other", labels=["a", "b"], schema={"x": "numeric"})
    assert queue.tasks_reprioritize(project_id=other.pk, updates=[(ids[1], 0.5, "uncertainty")]) == 0
