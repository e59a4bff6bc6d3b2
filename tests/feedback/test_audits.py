"""Likely label errors in the product: found over a dataset version with the project's own model,
sent to review in one action, and the reviewer's decision folded into the next version."""

from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User

from feedback import audits, datasets
from feedback.models import DatasetVersion, LabelIssue, LabelIssueStatus
from labeling.models import Label, Project, Task, TaskKind, TaskStatus
from labeling.services.projects import project_create
from labeling.services.review import review_decide
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = pytest.mark.django_db
LABELS = ["low", "mid", "high"]
N, FLIPPED = 90, [3, 17, 31, 44, 58, 72, 85]


def _truth(i: int) -> str:
    return LABELS[i % 3]


@pytest.fixture
def noisy(manager: User) -> tuple[Project, DatasetVersion]:
    """Three well-separated classes on two numeric fields and a categorical one; 7 labels flipped."""
    project = project_create(
        creator=manager, name="N", labels=LABELS, schema={"x": "numeric", "y": "numeric", "shade": "categorical"}
    )
    rng = np.random.default_rng(0)
    items = []
    for i in range(N):
        c = i % 3
        given = LABELS[(c + 1) % 3] if i in FLIPPED else LABELS[c]
        data = {"x": float(c * 4 + rng.normal()), "y": float(-c * 3 + rng.normal()), "shade": ["a", "b", "c"][c]}
        items.append(NewSample(external_id=f"r{i}", data=data, label=given))
    samples_add_bulk(project=project, items=items, actor=manager)
    version = datasets.dataset_version_cut(project_id=project.pk, trigger="test").version
    return project, version


def test_finds_the_flipped_labels_and_suggests_the_true_ones(noisy: tuple[Project, DatasetVersion]) -> None:
    project, version = noisy
    result = audits.label_issues_find(project_id=project.pk)
    assert result is not None and result.dataset_version == version.version and result.n_rows == N
    issues = list(LabelIssue.objects.filter(project=project).select_related("sample"))
    found = {int(issue.sample.external_id[1:]): issue for issue in issues}
    assert len(set(found) & set(FLIPPED)) >= 6  # recall
    assert len(set(found) - set(FLIPPED)) <= 2  # false alarms
    for i in set(found) & set(FLIPPED):
        assert (found[i].given_label, found[i].suggested_label) == (LABELS[(i + 1) % 3], _truth(i))
        assert 0 < found[i].score <= 1
        assert found[i].status == LabelIssueStatus.OPEN
    # Idempotent on the version.
    again = audits.label_issues_find(project_id=project.pk)
    assert again is not None and again.skipped == "already analyzed"
    assert LabelIssue.objects.filter(project=project).count() == len(issues)


def test_review_in_one_action_then_the_decision_resolves_and_reaches_the_next_version(
    noisy: tuple[Project, DatasetVersion], manager: User
) -> None:
    project, version = noisy
    audits.label_issues_find(project_id=project.pk)
    open_issues = list(LabelIssue.objects.filter(project=project, status=LabelIssueStatus.OPEN))
    assert audits.label_issues_send_to_review(project_id=project.pk) == len(open_issues)
    assert audits.label_issues_send_to_review(project_id=project.pk) == 0  # nothing open is left
    reviews = Task.objects.filter(project=project, kind=TaskKind.REVIEW, status=TaskStatus.PENDING)
    assert sorted(reviews.values_list("sample_id", flat=True)) == sorted(i.sample_id for i in open_issues)
    assert set(LabelIssue.objects.filter(project=project).values_list("status", flat=True)) == {"in_review"}

    decided = open_issues[0]
    review = reviews.get(sample_id=decided.sample_id)
    review_decide(task_id=review.pk, reviewer=manager, label=decided.suggested_label, why="flagged by the audit")
    # Read at once as resolved, written down by the next resolve.
    listed = {i.pk: audits.effective_status(i) for i in audits.label_issues_list(project_id=project.pk)}
    assert listed[decided.pk] == "resolved"
    assert audits.label_issues_resolve(project_id=project.pk) == 1
    assert LabelIssue.objects.get(pk=decided.pk).status == LabelIssueStatus.RESOLVED
    assert Label.objects.get(sample_id=decided.sample_id).label == decided.suggested_label

    cut = datasets.dataset_version_cut(project_id=project.pk, trigger="test")
    assert cut.created and cut.version.version == version.version + 1
    changes = datasets.diff_items(project_id=project.pk, older=version, newer=cut.version)
    assert changes == [
        {
            "external_id": decided.sample.external_id,
            "change": "changed",
            "old": decided.given_label,
            "new": decided.suggested_label,
        }
    ]
    # A new analysis replaces what was open and leaves what is in review.
    result = audits.label_issues_find(project_id=project.pk)
    assert result is not None and result.dataset_version == cut.version.version
    in_review = set(LabelIssue.objects.filter(status=LabelIssueStatus.IN_REVIEW).values_list("sample_id", flat=True))
    fresh = LabelIssue.objects.filter(dataset_version=cut.version)
    assert not set(fresh.values_list("sample_id", flat=True)) & in_review
    assert decided.sample_id not in set(fresh.values_list("sample_id", flat=True))


def test_small_versions_are_skipped(project: Project, manager: User, rows: Any) -> None:
    samples_add_bulk(
        project=project,
        items=[
            NewSample(external_id=r["external_id"], data=r["data"], label=r["label"]) for r in rows(12, labeled=True)
        ],
        actor=manager,
    )
    datasets.dataset_version_cut(project_id=project.pk, trigger="test")
    result = audits.label_issues_find(project_id=project.pk)
    assert result is not None and result.skipped.startswith("needs")
    assert not LabelIssue.objects.exists()
    assert audits.label_issues_find(project_id=project.pk + 1000) is None


def test_a_new_automatic_cut_enqueues_the_finder(
    noisy: tuple[Project, DatasetVersion], run_on_commit: Any, manager: User
) -> None:
    from feedback import tasks

    project, _ = noisy
    samples_add_bulk(project=project, items=[NewSample(external_id="late", data={"x": 0.0}, label="low")], actor=None)
    with run_on_commit():
        tasks.dataset_cut_and_train(project.pk, "labels")
    latest = DatasetVersion.objects.filter(project=project).order_by("-version").first()
    assert latest is not None and latest.version == 2
    assert LabelIssue.objects.filter(dataset_version=latest).exists()


def test_a_model_that_learned_nothing_flags_nothing(manager: User) -> None:
    project = project_create(creator=manager, name="R", labels=LABELS, schema={"x": "numeric"})
    rng = np.random.default_rng(1)
    samples_add_bulk(
        project=project,
        items=[NewSample(external_id=f"n{i}", data={"x": float(rng.normal())}, label=LABELS[i % 3]) for i in range(60)],
        actor=manager,
    )
    datasets.dataset_version_cut(project_id=project.pk, trigger="test")
    result = audits.label_issues_find(project_id=project.pk)
    assert result is not None and result.skipped.startswith("the model predicts no better")
    assert not LabelIssue.objects.exists()
