"""The queue: leases, overlap, skips, expiry, consensus on completion."""

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from labeling import queue
from labeling.models import (
    Annotation,
    Gold,
    Label,
    LabelChange,
    LabelMethod,
    Lease,
    LeaseStatus,
    Project,
    Reason,
    Role,
    Sample,
    Task,
    TaskKind,
    TaskStatus,
)
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


def make_gold(project: Project, sample_ids: list[int], label: str) -> list[int]:
    """Gold samples as labeling.services.gold makes them (issue 6's service, not needed here): a
    Gold row, the pending label task cancelled, one never-done gold task at priority 0."""
    Gold.objects.bulk_create([Gold(sample_id=s, project=project, label=label) for s in sample_ids])
    Task.objects.filter(sample_id__in=sample_ids, kind=TaskKind.LABEL, status=TaskStatus.PENDING).update(
        status=TaskStatus.CANCELLED
    )
    gold = [
        Task(project=project, sample_id=s, kind=TaskKind.GOLD, reason=Reason.GOLD, overlap=32767, priority=0.0)
        for s in sample_ids
    ]
    return [task.pk for task in Task.objects.bulk_create(gold)]


def test_gold_is_mixed_in_at_its_rate_once_per_annotator_and_not_told(manager: User, make_user: Any) -> None:
    project = _project(manager)
    project.gold_rate = 0.3
    project.save(update_fields=["gold_rate"])
    ids = _add(project, [0.5 + i / 1000 for i in range(120)])
    gold_tasks = set(make_gold(project, ids[:40], "a"))
    first, second = _people(make_user, project, 2)
    handed = []
    for _ in range(60):
        leased = queue.task_lease_next(project=project, user=first, role="annotator")
        assert leased is not None
        assert leased.reason != "gold" and queue.shown_kind(leased.task) == "label"  # never told
        handed.append(leased.task.pk)
        queue.annotation_submit(task_id=leased.task.pk, user=first, label="a")
    gold_share = sum(task in gold_tasks for task in handed) / len(handed)
    assert 0.1 < gold_share < 0.5, gold_share  # 0.3 expected; outside this with odds below 1e-4
    assert len(set(handed)) == len(handed)  # each gold task once to this annotator
    # Gold answers stay answers: the gold task is still pending, for the next annotator, and no label.
    some_gold = next(task for task in handed if task in gold_tasks)
    assert Task.objects.get(pk=some_gold).status == TaskStatus.PENDING
    assert not Label.objects.filter(sample_id__in=ids[:40]).exists()
    project.gold_rate = 0.0
    project.save(update_fields=["gold_rate"])
    for _ in range(10):
        leased = queue.task_lease_next(project=project, user=second, role="annotator")
        assert leased is not None and leased.task.pk not in gold_tasks


def test_gold_waits_while_no_label_work_is_left(manager: User, make_user: Any) -> None:
    """A gold task alone would give itself away (and never ends): none once label work is done."""
    project = _project(manager)
    project.gold_rate = 1.0
    project.save(update_fields=["gold_rate"])
    ids = _add(project, [0.5, 0.4])
    (gold_task,) = make_gold(project, ids[:1], "a")
    (user,) = _people(make_user, project, 1)
    first = queue.task_lease_next(project=project, user=user, role="annotator")
    assert first is not None and first.task.pk == gold_task  # gold first at rate 1, label work remaining
    queue.annotation_submit(task_id=first.task.pk, user=user, label="b")
    second = queue.task_lease_next(project=project, user=user, role="annotator")
    assert second is not None and second.task.sample_id == ids[1]
    queue.annotation_submit(task_id=second.task.pk, user=user, label="b")
    assert queue.task_lease_next(project=project, user=user, role="annotator") is None


def test_undo_takes_the_answer_back_within_the_grace_period(manager: User, make_user: Any) -> None:
    project = _project(manager)
    (sample_id,) = _add(project, [0.5])
    first, second = _people(make_user, project, 2)
    leased = queue.task_lease_next(project=project, user=first, role="annotator")
    assert leased is not None
    queue.annotation_submit(task_id=leased.task.pk, user=first, label="b")
    assert Label.objects.get(sample_id=sample_id).label == "b"
    with pytest.raises(Conflict):
        queue.annotation_undo(task_id=leased.task.pk, user=second)  # not theirs
    back = queue.annotation_undo(task_id=leased.task.pk, user=first)
    assert back.task.pk == leased.task.pk and back.expires_at > timezone.now()
    assert not Annotation.objects.exists()
    assert not Label.objects.filter(sample_id=sample_id).exists()  # the label it made is gone
    trail = list(LabelChange.objects.filter(sample_id=sample_id).order_by("id").values_list("method", "new_label"))
    assert trail == [(LabelMethod.MAJORITY, "b"), (LabelMethod.UNDO, None)]
    task = Task.objects.get(pk=leased.task.pk)
    assert (task.status, task.n_answers, task.n_leased) == (TaskStatus.PENDING, 0, 1)
    assert queue.task_lease_next(project=project, user=second, role="annotator") is None  # leased back to first
    queue.annotation_submit(task_id=leased.task.pk, user=first, label="c")
    assert Label.objects.get(sample_id=sample_id).label == "c"

    later = timezone.now() + timedelta(seconds=31)  # queue.undo_seconds defaults to 30
    with mock.patch("django.utils.timezone.now", return_value=later), pytest.raises(Conflict, match="too late"):
        queue.annotation_undo(task_id=leased.task.pk, user=first)
    assert Annotation.objects.get().label == "c"


def test_tasks_release_frees_the_leases_of_a_closed_page(manager: User, make_user: Any) -> None:
    project = _project(manager)
    _add(project, [0.5, 0.4])
    first, second = _people(make_user, project, 2)
    held = [queue.task_lease_next(project=project, user=first, role="annotator") for _ in range(2)]
    assert all(held) and queue.task_lease_next(project=project, user=second, role="annotator") is None
    released = queue.tasks_release(project_id=project.pk, user=first, task_ids=[h.task.pk for h in held if h])
    assert released == 2
    assert queue.task_lease_next(project=project, user=second, role="annotator") is not None


@pytest.mark.postgres
def test_hand_out_and_answer_are_one_statement_each_on_postgresql(
    manager: User, make_user: Any, django_assert_num_queries: Any
) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement path is PostgreSQL's")
    project = _project(manager)
    _add(project, [0.1 * i for i in range(50)])
    (user,) = _people(make_user, project, 1)
    from labeling import queue_pg

    # The statements go through a raw psycopg cursor: no Django query may run beside them.
    calls: list[str] = []
    original = queue_pg.run

    def counting(sql: str, params: dict[str, Any]) -> tuple[Any, ...]:
        calls.append(sql)
        return original(sql, params)

    with mock.patch.object(queue_pg, "run", counting), django_assert_num_queries(0):
        handed = queue.task_lease_next_checked(project_id=project.pk, user=user, roles=["annotator"])
        assert handed.leased is not None
        done = queue.annotation_submit_checked(task_id=handed.leased.task.pk, user=user, roles=["annotator"], label="a")
        assert done.annotation is not None
    assert calls == [queue_pg.NEXT, queue_pg.ANSWER]
    assert Label.objects.get(sample_id=handed.leased.task.sample_id).label == "a"
