"""Many annotators at once on PostgreSQL: every task answered exactly k times, no duplicate
leases, no lost answers, abandoned (expired) leases handed out again."""

import contextlib
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
from labeling.models import Annotation, Lease, LeaseStatus, Project, Role, Task, TaskStatus
from labeling.services.people import Conflict, member_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

N_TASKS = 60
N_THREADS = 8
OVERLAP = 2


def _abandon(task_id: int, user: User) -> None:
    """Let this user's lease run out, as if they walked away (moves its expiry to the past)."""
    past = timezone.now() - timedelta(seconds=1)
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        Lease.objects.filter(task=task, user=user, status=LeaseStatus.LIVE).update(expires_at=past)
        Task.objects.filter(pk=task.pk).update(lease_expiry=past)


def _annotate(project: Project, user: User, log: list[tuple[int, int]], abandoned: list[int], seed: int) -> None:
    rng = random.Random(seed)
    try:
        while True:
            leased = queue.task_lease_next(project=project, user=user, role="annotator")
            if leased is None:
                return
            log.append((leased.task.pk, user.pk))
            if rng.random() < 0.1 and len(abandoned) < 10:
                abandoned.append(leased.task.pk)
                _abandon(leased.task.pk, user)
                continue
            with contextlib.suppress(Conflict):  # our lease was abandoned and already taken over
                queue.annotation_submit(task_id=leased.task.pk, user=user, label=rng.choice(["a", "b"]))
    finally:
        connections.close_all()


def test_many_annotators_at_once(make_user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED concurrency is a PostgreSQL property")
    manager = make_user("boss")
    project = project_create(creator=manager, name="C", labels=["a", "b"], schema={"x": "numeric"}, overlap=OVERLAP)
    items = [NewSample(external_id=f"e{i}", data={"x": i}, priority=i / N_TASKS) for i in range(N_TASKS)]
    samples_add_bulk(project=project, items=items, actor=None)
    users = [make_user(f"w{i}") for i in range(N_THREADS)]
    for user in users:
        member_set(project=project, user=user, role=Role.ANNOTATOR)
    logs: list[list[tuple[int, int]]] = [[] for _ in users]
    abandoned: list[int] = []
    threads = [
        threading.Thread(target=_annotate, args=(project, user, log, abandoned, i))
        for i, (user, log) in enumerate(zip(users, logs, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    per_task = Counter(Annotation.objects.values_list("task_id", flat=True))
    assert len(per_task) == N_TASKS
    assert set(per_task.values()) == {OVERLAP}  # every task answered exactly k times
    pairs = Annotation.objects.values_list("task_id", "user_id")
    assert len(set(pairs)) == len(pairs)  # never twice by one person
    assert not Task.objects.filter(project=project, status=TaskStatus.PENDING).exists()
    # No lease was handed to two holders at once: each hand-out of a (task, user) pair happened
    # at most once, except the re-lease of an abandoned task to the same person.
    handed = Counter(pair for log in logs for pair in log)
    assert all(n == 1 or task in abandoned for (task, _), n in handed.items())
    # Abandoned leases came back: their tasks still got k answers.
    assert abandoned and all(per_task[task] == OVERLAP for task in abandoned)
