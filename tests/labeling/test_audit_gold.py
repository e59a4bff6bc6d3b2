"""Gold samples: their rows and tasks, what happens to the tasks already queued, and removal."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from labeling import queue
from labeling.models import (
    Gold,
    Label,
    Lease,
    LeaseStatus,
    Project,
    Role,
    Sample,
    SampleStatus,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.services.gold import GOLD_OVERLAP, gold_remove, gold_set
from labeling.services.people import Conflict, member_set
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = pytest.mark.django_db


def _ids(project: Project, n: int) -> list[int]:
    added = samples_add_bulk(
        project=project, items=[NewSample(external_id=f"e{i}", data={"x": i}) for i in range(n)], actor=None
    )
    return [i for i in added.sample_ids if i is not None]


def test_gold_set_makes_one_never_done_gold_task_per_sample(project: Project, manager: User) -> None:
    first, second, third = _ids(project, 3)
    result = gold_set(project_id=project.pk, items=[(first, "cat"), (second, "dog")], actor=manager)
    assert (result.created, result.updated, result.cancelled_tasks) == (2, 0, 2)
    gold_tasks = Task.objects.filter(project=project, kind=TaskKind.GOLD)
    assert sorted(gold_tasks.values_list("sample_id", "reason", "priority", "overlap", "status")) == [
        (first, "gold", 0.0, GOLD_OVERLAP, TaskStatus.PENDING),
        (second, "gold", 0.0, GOLD_OVERLAP, TaskStatus.PENDING),
    ]
    assert dict(Gold.objects.values_list("sample_id", "label")) == {first: "cat", second: "dog"}
    assert Gold.objects.get(sample_id=first).created_by == manager
    # Their label tasks are cancelled; the third sample's stays.
    pending_labels = Task.objects.filter(project=project, kind=TaskKind.LABEL, status=TaskStatus.PENDING)
    assert list(pending_labels.values_list("sample_id", flat=True)) == [third]
    assert set(Sample.objects.filter(pk__in=[first, second]).values_list("status", flat=True)) == {SampleStatus.QUEUED}
    # Again, with one label changed: no second gold task.
    again = gold_set(project_id=project.pk, items=[(first, "bird"), (second, "dog")], actor=manager)
    assert (again.created, again.updated, again.unchanged, again.cancelled_tasks) == (0, 1, 1, 0)
    assert gold_tasks.count() == 2
    assert Gold.objects.get(sample_id=first).label == "bird"


def test_a_lease_on_a_task_that_turns_gold_is_expired(project: Project, annotator: User, manager: User) -> None:
    (sample_id,) = _ids(project, 1)
    leased = queue.task_lease_next(project=project, user=annotator, role=Role.ANNOTATOR)
    assert leased is not None and leased.task.sample_id == sample_id
    gold_set(project_id=project.pk, items=[(sample_id, "cat")], actor=manager)
    assert Lease.objects.get(user=annotator).status == LeaseStatus.EXPIRED
    with pytest.raises(Conflict):
        queue.annotation_submit(task_id=leased.task.pk, user=annotator, label="dog")
    assert not Label.objects.filter(sample_id=sample_id).exists()


def test_gold_remove_cancels_the_gold_task_and_queues_unlabeled_samples_again(
    project: Project, manager: User, make_user: Any
) -> None:
    (unlabeled,) = _ids(project, 1)
    known = samples_add_bulk(
        project=project, items=[NewSample(external_id="known", data={"x": 1}, label="dog")], actor=None
    ).sample_ids[0]
    assert known is not None
    gold_set(project_id=project.pk, items=[(unlabeled, "cat"), (known, "dog")], actor=manager)
    other = make_user("other")
    member_set(project=project, user=other, role=Role.ANNOTATOR)
    assert gold_remove(project=project, sample_ids=[unlabeled, known]) == 2
    assert gold_remove(project=project, sample_ids=[unlabeled]) == 0
    assert not Gold.objects.exists()
    assert not Task.objects.filter(kind=TaskKind.GOLD, status=TaskStatus.PENDING).exists()
    requeued = Task.objects.get(sample_id=unlabeled, kind=TaskKind.LABEL, status=TaskStatus.PENDING)
    assert (requeued.reason, requeued.overlap) == ("manual", project.overlap)
    assert not Task.objects.filter(sample_id=known, status=TaskStatus.PENDING).exists()
    assert Sample.objects.get(pk=known).status == SampleStatus.LABELED


def test_the_queue_mixes_gold_in_unannounced_and_it_scores_the_annotator(
    project: Project, manager: User, make_user: Any, client_for: Any
) -> None:
    from labeling.audit import project_audit

    # Overlap 2: both annotators have label work left, which is when gold is mixed in (an annotator
    # with only gold tasks left would know them for what they are).
    Project.objects.filter(pk=project.pk).update(overlap=2, gold_rate=1.0)  # every hand-out tries gold first
    project.refresh_from_db()
    ids = _ids(project, 4)
    gold_set(project_id=project.pk, items=[(ids[0], "cat"), (ids[1], "dog")], actor=manager)
    names = {s: e for e, s in Sample.objects.filter(project=project).values_list("external_id", "pk")}
    gold_names = {names[ids[0]], names[ids[1]]}
    for who in ("ann", "bob"):
        user = make_user(who)
        member_set(project=project, user=user, role=Role.ANNOTATOR)
        api = client_for(user)
        seen = []
        while (response := api.post(f"/api/projects/{project.pk}/tasks/next/")).status_code == 200:
            task = response.json()
            assert task["reason"] != "gold"  # nothing tells the annotator
            seen.append(task["external_id"])
            label = "cat" if who == "ann" else "bird"  # ann is right on one gold sample, bob on none
            posted = api.post(f"/api/tasks/{task['task_id']}/annotations/", {"label": label}, format="json")
            assert posted.status_code == 201, posted.content
        assert response.status_code == 204, response.content
        assert set(seen[:2]) == gold_names  # gold first (gold_rate 1), then the two label tasks
        assert len(seen) == 4
    rows = {row["username"]: row for row in project_audit(project=project)["annotators"]}
    assert (rows["ann"]["gold_accuracy"], rows["ann"]["n_gold"]) == (0.5, 2)
    assert (rows["bob"]["gold_accuracy"], rows["bob"]["n_gold"]) == (0.0, 2)
    assert not Label.objects.filter(sample_id__in=ids[:2]).exists()  # gold answers label nothing
