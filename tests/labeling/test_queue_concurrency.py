"""Many annotators at once on PostgreSQL: every task answered exactly k times, no duplicate leases,
no lost answers, abandoned (expired) leases handed out again, and the counters still exact."""

import random
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections, transaction
from django.utils import timezone

from labeling import queue
from labeling.models import Annotation, Label, Lease, LeaseStatus, Project, Role, Sample, Task, TaskKind, TaskStatus
from labeling.services.counters import project_counters
from labeling.services.people import Conflict, member_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk
from tests.labeling.test_queue import make_gold

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

N_TASKS = 60
N_THREADS = 8


def _abandon(task_id: int, user: User) -> None:
    """Let this user's lease run out, as if they walked away (moves its expiry to the past)."""
    past = timezone.now() - timedelta(seconds=1)
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        Lease.objects.filter(task=task, user=user, status=LeaseStatus.LIVE).update(expires_at=past)
        Task.objects.filter(pk=task.pk).update(lease_expiry=past)


class Run:
    def __init__(self) -> None:
        self.handed: list[tuple[int, int]] = []  # (task, user) per hand-out
        self.accepted: list[tuple[int, int]] = []  # (task, user) per answer the queue accepted
        self.abandoned: list[int] = []
        self.refused: list[str] = []
        self.lock = threading.Lock()


def _annotate(project: Project, user: User, run: Run, seed: int) -> None:
    rng = random.Random(seed)
    try:
        while True:
            leased = queue.task_lease_next(project=project, user=user, role="annotator")
            if leased is None:
                return
            with run.lock:
                run.handed.append((leased.task.pk, user.pk))
                abandon = rng.random() < 0.1 and len(run.abandoned) < 10
                if abandon:
                    run.abandoned.append(leased.task.pk)
            if abandon:
                _abandon(leased.task.pk, user)
                continue
            try:
                queue.annotation_submit(task_id=leased.task.pk, user=user, label=rng.choice(["a", "b"]))
            except Conflict as exc:  # only an abandoned lease, taken over since, may be refused
                with run.lock:
                    run.refused.append(f"{leased.task.pk}: {exc}")
                continue
            with run.lock:
                run.accepted.append((leased.task.pk, user.pk))
    finally:
        connections.close_all()


def _run(project: Project, users: list[User]) -> Run:
    run = Run()
    threads = [threading.Thread(target=_annotate, args=(project, user, run, i)) for i, user in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return run


def _crowd(make_user: Any, overlap: int, gold_rate: float = 0.0) -> tuple[Project, list[User]]:
    manager = make_user("boss")
    project = project_create(
        creator=manager, name="C", labels=["a", "b"], schema={"x": "numeric"}, overlap=overlap, gold_rate=gold_rate
    )
    items = [NewSample(external_id=f"e{i}", data={"x": i}, priority=i / N_TASKS) for i in range(N_TASKS)]
    samples_add_bulk(project=project, items=items, actor=None)
    users = [make_user(f"w{i}") for i in range(N_THREADS)]
    for user in users:
        member_set(project=project, user=user, role=Role.ANNOTATOR)
    return project, users


def _assert_counters_exact(project: Project) -> None:
    counters = project_counters(project_id=project.pk)
    pending = Counter(Task.objects.filter(project=project, status=TaskStatus.PENDING).values_list("kind", flat=True))
    assert counters["queued"] == sum(pending.values())
    assert {k: counters[f"queued_{k}"] for k in TaskKind.values} == {k: pending.get(k, 0) for k in TaskKind.values}
    assert counters["labeled"] == Label.objects.filter(project=project).count()
    assert counters["samples"] == Sample.objects.filter(project=project).count()


@pytest.mark.parametrize("overlap", [2, 1])
def test_many_annotators_at_once(make_user: Any, overlap: int) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED concurrency is a PostgreSQL property")
    project, users = _crowd(make_user, overlap)
    run = _run(project, users)

    stored = list(Annotation.objects.filter(project_id=project.pk).values_list("task_id", "user_id"))
    assert sorted(stored) == sorted(run.accepted)  # no lost answers, none stored that was refused
    per_task = Counter(task for task, _ in stored)
    assert len(per_task) == N_TASKS
    assert set(per_task.values()) == {overlap}  # every task answered exactly k times
    assert len(set(stored)) == len(stored)  # never twice by one person
    assert not Task.objects.filter(project=project, kind=TaskKind.LABEL, status=TaskStatus.PENDING).exists()
    # No lease was handed to two holders at once: each hand-out of a (task, user) pair happened
    # at most once, except the re-lease of an abandoned task to the same person.
    handed = Counter(run.handed)
    assert all(n == 1 or task in run.abandoned for (task, _), n in handed.items())
    # Abandoned leases came back: their tasks still got k answers, from whoever took them over.
    assert run.abandoned and all(per_task[task] == overlap for task in run.abandoned)
    assert all(int(r.split(":")[0]) in run.abandoned for r in run.refused)
    # Every finished task has its label, or (a tie of two answers) a review task.
    decided = set(Label.objects.filter(project=project).values_list("sample_id", flat=True))
    reviewed = set(Task.objects.filter(project=project, kind=TaskKind.REVIEW).values_list("sample_id", flat=True))
    assert decided | reviewed == set(Sample.objects.filter(project=project).values_list("pk", flat=True))
    _assert_counters_exact(project)


def test_gold_mixed_in_under_load_once_per_annotator(make_user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED concurrency is a PostgreSQL property")
    project, users = _crowd(make_user, 1, gold_rate=0.3)
    golden = list(Sample.objects.filter(project=project).order_by("id").values_list("pk", flat=True)[:5])
    gold_tasks = set(make_gold(project, golden, "a"))
    run = _run(project, users)

    stored = list(Annotation.objects.filter(project_id=project.pk).values_list("task_id", "user_id"))
    assert sorted(stored) == sorted(run.accepted)
    gold_answers = [(task, user) for task, user in stored if task in gold_tasks]
    assert gold_answers and len(set(gold_answers)) == len(gold_answers)  # once per annotator
    # Gold answers never made a label; every other sample got exactly one answer and its label.
    assert not Label.objects.filter(sample_id__in=golden).exists()
    label_answers = Counter(task for task, _ in stored if task not in gold_tasks)
    assert len(label_answers) == N_TASKS - len(golden) and set(label_answers.values()) == {1}
    assert Task.objects.filter(pk__in=gold_tasks, status=TaskStatus.PENDING).count() == len(gold_tasks)
    _assert_counters_exact(project)


def test_a_queue_whose_rows_are_held_is_busy_not_empty(make_user: Any) -> None:
    """A hand-out that finds only rows another transaction holds (SKIP LOCKED skips them) says the
    queue is busy and tries again, so the task held for a moment is handed out, not "nothing left"."""
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED concurrency is a PostgreSQL property")
    manager = make_user("boss")
    project = project_create(creator=manager, name="B", labels=["a", "b"], schema={"x": "numeric"})
    samples_add_bulk(project=project, items=[NewSample(external_id="b0", data={"x": 0}, priority=1)], actor=None)
    user = make_user("w")
    member_set(project=project, user=user, role=Role.ANNOTATOR)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(Task.objects.select_for_update().filter(project=project))
                held.set()
                release.wait(5)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    threading.Timer(0.03, release.set).start()  # let go while the hand-out waits between its tries
    leased = queue.task_lease_next(project=project, user=user, role="annotator")
    holder.join(5)
    assert leased is not None and leased.sample.external_id == "b0"
