"""Consensus wired into the queue: majority or Dawid-Skene per project, ties and low confidence to
review, gold answers that score annotators and never change labels, and the re-estimate."""

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.utils import timezone

from labeling import queue
from labeling.consensus import prior_confusion
from labeling.models import (
    Annotation,
    Gold,
    Label,
    LabelChange,
    Lease,
    Project,
    Role,
    Sample,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.services import consensus
from labeling.services.gold import gold_set
from labeling.services.people import member_set
from labeling.services.projects import project_create, project_update
from labeling.services.samples import NewSample, samples_add_bulk

LABELS = ["cat", "dog", "bird"]
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_debounce() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _project(manager: User, *, overlap: int, method: str = "majority", review_below: float = 0.0) -> Project:
    return project_create(
        creator=manager,
        name="C",
        labels=LABELS,
        schema={"x": "numeric"},
        overlap=overlap,
        settings={"consensus": {"method": method, "review_below": review_below}},
    )


def _samples(project: Project, n: int, prefix: str = "e") -> list[int]:
    added = samples_add_bulk(
        project=project,
        items=[NewSample(external_id=f"{prefix}{i}", data={"x": i}, priority=1.0 - i / 1000) for i in range(n)],
        actor=None,
    )
    return [i for i in added.sample_ids if i is not None]


def _people(make_user: Any, project: Project, names: list[str]) -> list[User]:
    users = [make_user(name) for name in names]
    for user in users:
        member_set(project=project, user=user, role=Role.ANNOTATOR)
    return users


def _answer_everything(project: Project, users: list[User], oracle: Callable[[User, Sample], str]) -> int:
    """Each user takes tasks from the queue until none is left for them, answering by ``oracle``."""
    n = 0
    for user in users:
        while (leased := queue.task_lease_next(project=project, user=user, role="annotator")) is not None:
            if leased.task.kind == TaskKind.GOLD:
                queue.task_skip(task_id=leased.task.pk, user=user)
                continue
            queue.annotation_submit(task_id=leased.task.pk, user=user, label=oracle(user, leased.sample))
            n += 1
    return n


def _answer_gold(task: Task, user: User, label: str) -> None:
    """An answer on a gold task through the answer path. Handing gold tasks out at gold_rate is
    the queue's (issue 4) business; here the lease is made directly."""
    Lease.objects.create(task=task, user=user, expires_at=timezone.now() + timedelta(minutes=5))
    Task.objects.filter(pk=task.pk).update(n_leased=1)
    queue.annotation_submit(task_id=task.pk, user=user, label=label)


def test_majority_tie_goes_to_review_instead_of_a_label(manager: User, make_user: Any) -> None:
    project = _project(manager, overlap=2)
    (sample_id,) = _samples(project, 1)
    answers = {"a": "cat", "b": "dog"}
    users = _people(make_user, project, ["a", "b"])
    _answer_everything(project, users, lambda user, _: answers[user.username])
    assert Task.objects.get(sample_id=sample_id, kind=TaskKind.LABEL).status == TaskStatus.DONE
    assert not Label.objects.filter(sample_id=sample_id).exists()
    assert not LabelChange.objects.filter(sample_id=sample_id).exists()
    review = Task.objects.get(sample_id=sample_id, kind=TaskKind.REVIEW)
    assert (review.status, review.reason) == (TaskStatus.PENDING, "review")


def test_majority_below_review_below_goes_to_review_and_above_is_final(manager: User, make_user: Any) -> None:
    project = _project(manager, overlap=3, review_below=0.7)
    first, second = _samples(project, 2)
    users = _people(make_user, project, ["a", "b", "c"])
    # First sample 2 of 3 (0.67 < 0.7): review. Second sample unanimous: final, confidence 1.
    _answer_everything(
        project,
        users,
        lambda user, sample: "dog" if sample.pk == first and user.username == "c" else "cat",
    )
    assert not Label.objects.filter(sample_id=first).exists()
    assert Task.objects.filter(sample_id=first, kind=TaskKind.REVIEW, status=TaskStatus.PENDING).exists()
    label = Label.objects.get(sample_id=second)
    assert (label.label, label.confidence, label.method, label.n_annotations) == ("cat", 1.0, "majority", 3)
    assert not Task.objects.filter(sample_id=second, kind=TaskKind.REVIEW).exists()
    change = LabelChange.objects.get(sample_id=second)  # the trail says why
    assert (change.old_label, change.new_label, change.method, change.reason) == (
        None,
        "cat",
        "majority",
        "majority: 3 of 3 answers",
    )


def _spammer_world(manager: User, make_user: Any) -> tuple[Project, dict[int, str], list[User]]:
    """One careful annotator and two who always answer "cat"; 18 samples whose truth cycles over
    the labels, and 6 gold samples (2 per label) that all three answered."""
    project = _project(manager, overlap=3, method="dawid_skene")
    truth = {s: LABELS[i % 3] for i, s in enumerate(_samples(project, 18))}
    gold_ids = _samples(project, 6, prefix="g")
    gold_labels = {s: LABELS[i % 3] for i, s in enumerate(gold_ids)}
    gold_set(project_id=project.pk, items=list(gold_labels.items()), actor=manager)
    users = _people(make_user, project, ["careful", "spam1", "spam2"])

    def oracle(user: User, sample: Sample) -> str:
        return truth.get(sample.pk, gold_labels.get(sample.pk, "cat")) if user.username == "careful" else "cat"

    for task in Task.objects.filter(sample_id__in=gold_ids, kind=TaskKind.GOLD):
        for user in users:
            _answer_gold(task, user, oracle(user, Sample(pk=task.sample_id)))
    _answer_everything(project, users, oracle)
    return project, truth, users


def test_dawid_skene_learns_from_gold_and_overrules_agreeing_spammers(manager: User, make_user: Any) -> None:
    project, truth, _ = _spammer_world(manager, make_user)
    # The answer path had nothing to go on but the first (tiny) estimate; the re-estimate over all
    # 72 answers, with the gold samples clamped, finds the careful annotator.
    result = consensus.consensus_reestimate(project_id=project.pk)
    assert result is not None and not result.skipped
    final = dict(Label.objects.filter(project=project).values_list("sample_id", "label"))
    assert set(final) == set(truth)  # gold samples got no label from their answers
    assert final == truth
    assert result.changed == sum(1 for label in truth.values() if label != "cat") == 12
    changes = LabelChange.objects.filter(project=project, reason="Dawid-Skene re-estimate")
    assert changes.count() == 12
    assert set(changes.values_list("method", flat=True)) == {"dawid_skene"}
    assert all(c.old_label == "cat" and c.new_label == truth[c.sample_id] for c in changes)
    assert set(Label.objects.filter(project=project).values_list("method", flat=True)) == {"dawid_skene"}
    # Idempotent: nothing new, nothing done.
    again = consensus.consensus_reestimate(project_id=project.pk)
    assert again is not None and again.skipped
    assert LabelChange.objects.filter(project=project).count() == 18 + 12


def test_answer_path_decides_with_the_stored_matrices(manager: User, make_user: Any) -> None:
    project, _, users = _spammer_world(manager, make_user)
    consensus.consensus_reestimate(project_id=project.pk)
    (new,) = _samples(project, 1, prefix="late")
    _answer_everything(project, users, lambda user, _: "bird" if user.username == "careful" else "cat")
    label = Label.objects.get(sample_id=new)
    assert (label.label, label.method, label.n_annotations) == ("bird", "dawid_skene", 3)
    assert label.confidence > 0.5
    # Majority vote on the same three answers says cat.
    project_update(project_id=project.pk, changes={"consensus": {"method": "majority"}})
    (other,) = _samples(project, 1, prefix="later")
    _answer_everything(project, users, lambda user, _: "bird" if user.username == "careful" else "cat")
    assert Label.objects.get(sample_id=other).label == "cat"


def test_low_posterior_goes_to_review(manager: User, make_user: Any) -> None:
    project = _project(manager, overlap=2, method="dawid_skene", review_below=0.9)
    (sample_id,) = _samples(project, 1)
    users = _people(make_user, project, ["a", "b"])
    # No estimate yet: prior matrices, two disagreeing answers tie exactly.
    _answer_everything(project, users, lambda user, _: "cat" if user.username == "a" else "dog")
    assert not Label.objects.filter(sample_id=sample_id).exists()
    assert Task.objects.filter(sample_id=sample_id, kind=TaskKind.REVIEW, status=TaskStatus.PENDING).exists()


def test_gold_answers_score_but_never_change_labels(manager: User, make_user: Any) -> None:
    project = _project(manager, overlap=1)
    labeled = samples_add_bulk(
        project=project, items=[NewSample(external_id="known", data={"x": 1}, label="bird")], actor=None
    ).sample_ids[0]
    assert labeled is not None
    (fresh,) = _samples(project, 1, prefix="fresh")
    gold_set(project_id=project.pk, items=[(labeled, "bird"), (fresh, "dog")], actor=manager)
    users = _people(make_user, project, ["a", "b"])
    for task in Task.objects.filter(project=project, kind=TaskKind.GOLD):
        assert (task.reason, task.priority, task.overlap, task.status) == ("gold", 0.0, 32767, TaskStatus.PENDING)
        for user in users:
            _answer_gold(task, user, "cat")
    assert Annotation.objects.filter(task__kind=TaskKind.GOLD).count() == 4
    assert Task.objects.filter(project=project, kind=TaskKind.GOLD, status=TaskStatus.PENDING).count() == 2
    assert dict(Label.objects.filter(project=project).values_list("sample_id", "label")) == {labeled: "bird"}
    assert LabelChange.objects.filter(project=project).count() == 1  # the import
    # The fresh sample's label task was cancelled: nobody is handed the same sample twice.
    assert not Task.objects.filter(sample_id=fresh, kind=TaskKind.LABEL, status=TaskStatus.PENDING).exists()
    # Even if a label task of a gold sample were finalized, it would not make a label.
    consensus.task_finalize(task=Task.objects.get(sample_id=fresh, kind=TaskKind.LABEL))
    assert not Label.objects.filter(sample_id=fresh).exists()
    assert Gold.objects.filter(project=project).count() == 2


def test_reestimate_requests_are_debounced_and_sent_after_commit(
    manager: User, make_user: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from labeling import tasks

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        tasks.consensus_reestimate, "apply_async", lambda args, countdown: sent.append((args, countdown))
    )
    project = _project(manager, overlap=1, method="dawid_skene")
    _samples(project, 3)
    (user,) = _people(make_user, project, ["a"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _answer_everything(project, [user], lambda *_: "dog")
    assert sent == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sent == [((project.pk,), consensus.REESTIMATE_DELAY)]  # three answers, one request
    assert Label.objects.filter(project=project, method="dawid_skene").count() == 3


def test_reestimate_leaves_reviewed_and_imported_labels_alone(manager: User, make_user: Any) -> None:
    project, truth, _ = _spammer_world(manager, make_user)
    from labeling.services.review import review_decide, review_request

    some = sorted(truth)[1]  # truth "dog", labeled "cat" by the answer path
    review_request(project_id=project.pk, sample_ids=[some])
    review = Task.objects.get(sample_id=some, kind=TaskKind.REVIEW)
    review_decide(task_id=review.pk, reviewer=manager, label="bird", why="looked closely")
    consensus.consensus_reestimate(project_id=project.pk)
    label = Label.objects.get(sample_id=some)
    assert (label.label, label.method) == ("bird", "review")


def test_reestimate_sends_changes_it_is_unsure_of_to_review(manager: User, make_user: Any) -> None:
    project, truth, _ = _spammer_world(manager, make_user)
    project_update(project_id=project.pk, changes={"consensus": {"method": "dawid_skene", "review_below": 1.0}})
    result = consensus.consensus_reestimate(project_id=project.pk)
    assert result is not None and (result.changed, result.sent_to_review) == (0, 12)
    would_change = {s for s, label in truth.items() if label != "cat"}
    reviews = Task.objects.filter(project=project, kind=TaskKind.REVIEW, status=TaskStatus.PENDING)
    assert set(reviews.values_list("sample_id", flat=True)) == would_change
    final = dict(Label.objects.filter(project=project).values_list("sample_id", "label"))
    assert all(final[s] == "cat" for s in would_change)  # unchanged until a reviewer decides
    # The labels it confirms are now Dawid-Skene's, with its confidence, and no trail row.
    confirmed = Label.objects.filter(project=project).exclude(sample_id__in=would_change)
    assert set(confirmed.values_list("method", flat=True)) == {"dawid_skene"}
    assert not LabelChange.objects.filter(project=project, reason=consensus.REESTIMATE_REASON).exists()


@pytest.mark.parametrize("n_labels", [3, 40])  # 40 labels x 6 annotators pass FULL_MATRIX_LIMIT: diagonals
def test_the_stored_estimate_round_trips(n_labels: int) -> None:
    rng = np.random.default_rng(n_labels)
    raw = rng.random((6, n_labels, n_labels)) + 3 * np.eye(n_labels)
    confusion = raw / raw.sum(axis=2, keepdims=True)
    users = np.array([40, 7, 12, 99, 3, 58], dtype=np.int64)
    labels = [f"l{i}" for i in range(n_labels)]
    priors = np.full(n_labels, 1.0 / n_labels)
    state = consensus._state_of(labels, users, confusion, priors, 10, "g", 5, True)
    assert all(not isinstance(value, list) for key, value in state.items() if key in ("matrices", "annotators"))
    estimate = consensus._estimate_of(state, labels)
    for position, user_id in enumerate(users.tolist()):
        got = estimate.matrix(user_id)
        if n_labels == 3:
            assert got == pytest.approx(confusion[position], abs=1e-6)
        else:  # the diagonal kept, the rest spread evenly
            assert np.diag(got) == pytest.approx(np.diag(confusion[position]), abs=1e-6)
        assert got.sum(axis=1) == pytest.approx(np.ones(n_labels))
    assert estimate.matrix(1234) == pytest.approx(prior_confusion(n_labels))
    assert consensus._estimate_of(state, [*labels[:-1], "renamed"]).priors is None  # labels changed: the prior
