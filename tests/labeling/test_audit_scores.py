"""The audit selector: agreement and per-annotator scores over a project's stored answers, checked
against the reference packages and against figures worked out by hand."""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import krippendorff
import numpy as np
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from labeling import audit
from labeling.annotator_scores import completion_buckets, group_medians, latest_per_pair
from labeling.audit import project_audit
from labeling.models import Annotation, DerivedState, LabelMethod, Project, Sample, Task
from labeling.services.gold import gold_set
from labeling.services.labels import LabelDecision, labels_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk

LABELS = ["cat", "dog", "bird"]
pytestmark = pytest.mark.django_db


def test_latest_per_pair_keeps_the_last_answer_of_each_pair() -> None:
    items = np.array([0, 0, 1, 0, 1, 2])
    annotators = np.array([0, 1, 0, 0, 0, 1])
    assert latest_per_pair(items, annotators, n_annotators=2).tolist() == [1, 3, 4, 5]


def test_group_medians_ignore_nan_and_leave_empty_groups_nan() -> None:
    out = group_medians(np.array([0, 0, 0, 1, 1, 2]), np.array([5, 1, 3, 2, 4, np.nan]), n_groups=4)
    assert out[:2].tolist() == [3.0, 3.0]
    assert np.isnan(out[2]) and np.isnan(out[3])


def test_completion_buckets_use_the_last_answer() -> None:
    buckets = completion_buckets(np.array([0, 0, 1, 2]), np.array([1.0, 25.0, 5.0, 99.0]), n_items=4, edges=[0, 10, 30])
    assert buckets.tolist() == [1, 0, -1, -1]


def _store(project: Project, answers: Sequence[tuple[str, str, str, int | None]], start: Any) -> dict[str, int]:
    """Answers (sample, annotator, label, duration) stored as rows, one minute apart."""
    samples = sorted({a[0] for a in answers})
    samples_add_bulk(project=project, items=[NewSample(external_id=s, data={"x": 1}) for s in samples], actor=None)
    ids = dict(Sample.objects.filter(project=project).values_list("external_id", "pk"))
    tasks = dict(Task.objects.filter(project=project).values_list("sample_id", "pk"))
    users = {name: User.objects.get_or_create(username=name)[0] for name in sorted({a[1] for a in answers})}
    seen: set[tuple[str, str]] = set()
    rows = []
    for i, (s, u, label, d) in enumerate(answers):
        task_id = tasks[ids[s]]
        if (s, u) in seen:  # a second answer on the sample: it came through another (done) task
            task_id = Task.objects.create(project=project, sample_id=ids[s], reason="random", status=1).pk
        seen.add((s, u))
        rows.append(
            Annotation(
                project=project,
                task_id=task_id,
                sample_id=ids[s],
                user=users[u],
                label=label,
                duration_ms=d,
                created_at=start + timedelta(minutes=i),
            )
        )
    Annotation.objects.bulk_create(rows)
    return ids


CROWD = [
    # sample, annotator, label, duration
    ("s1", "ann", "cat", 1000),
    ("s1", "bob", "cat", 3000),
    ("s1", "cyd", "dog", None),
    ("s2", "ann", "dog", 2000),
    ("s2", "bob", "dog", 1000),
    ("s3", "ann", "bird", 4000),
    ("s3", "cyd", "bird", 500),
    ("s3", "bob", "cat", 700),
    ("s4", "bob", "dog", 900),
    ("s5", "ann", "cat", 800),
    ("s5", "cyd", "cat", 600),
    ("g1", "ann", "bird", 100),
    ("g1", "bob", "bird", 100),
    ("g1", "cyd", "dog", 100),
    ("g2", "ann", "cat", 100),
    ("g2", "cyd", "dog", 100),
]


def test_audit_figures_equal_the_reference_packages_and_hand_counts(manager: User) -> None:
    project = project_create(creator=manager, name="A", labels=LABELS, schema={"x": "numeric"})
    ids = _store(project, CROWD, timezone.now() - timedelta(days=3))
    gold_set(project_id=project.pk, items=[(ids["g1"], "bird"), (ids["g2"], "cat")], actor=manager)
    finals = {"s1": ("cat", "majority"), "s2": ("dog", "majority"), "s4": ("cat", "review"), "s5": ("cat", "majority")}
    labels_set(
        project_id=project.pk,
        decisions=[
            LabelDecision(sample_id=ids[s], label=label, confidence=1.0, method=method, n_annotations=2)  # type: ignore[arg-type]
            for s, (label, method) in finals.items()
        ],
        actor=None,
    )
    report = project_audit(project=project)

    samples = sorted({a[0] for a in CROWD})
    people = ["ann", "bob", "cyd"]
    matrix = np.full((3, len(samples)), np.nan)
    for s, u, label, _ in CROWD:
        matrix[people.index(u), samples.index(s)] = LABELS.index(label)
    assert report["agreement"]["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"), abs=1e-4
    )
    assert report["n_annotations"] == len(CROWD) and report["n_items"] == 7 and report["n_gold"] == 2
    pairs = {(p["a"], p["b"]): p for p in report["agreement"]["pairwise_cohen_kappa"]}
    ab = [i for i in range(len(samples)) if not np.isnan(matrix[:2, i]).any()]
    assert pairs[("ann", "bob")]["n"] == len(ab) == 4
    assert pairs[("ann", "bob")]["kappa"] == pytest.approx(cohen_kappa_score(matrix[0, ab], matrix[1, ab]), abs=1e-4)

    rows = {row["username"]: row for row in report["annotators"]}
    assert [row["username"] for row in report["annotators"]] == people
    assert {u: rows[u]["n_annotations"] for u in people} == {"ann": 6, "bob": 5, "cyd": 5}
    # Gold: g1 is bird, g2 is cat.
    assert (rows["ann"]["gold_accuracy"], rows["ann"]["n_gold"]) == (1.0, 2)
    assert (rows["bob"]["gold_accuracy"], rows["bob"]["n_gold"]) == (1.0, 1)
    assert (rows["cyd"]["gold_accuracy"], rows["cyd"]["n_gold"]) == (0.0, 2)
    # Agreement with the final label, where it does not rest on one answer alone: s1, s2, s5 (two
    # answers or more) and s4 (a reviewer's); never gold samples; s3 has no final label.
    assert (rows["ann"]["agreement_with_consensus"], rows["ann"]["n_compared"]) == (1.0, 3)
    assert (rows["bob"]["agreement_with_consensus"], rows["bob"]["n_compared"]) == (pytest.approx(2 / 3, abs=1e-4), 3)
    assert (rows["cyd"]["agreement_with_consensus"], rows["cyd"]["n_compared"]) == (0.5, 2)
    assert rows["ann"]["median_duration_ms"] == 900.0  # 1000 2000 4000 800 100 100
    assert rows["cyd"]["median_duration_ms"] == 300.0  # 500 600 100 100: the untimed answer left out
    assert all(len(row["confusion_matrix"]) == 3 and len(row["confusion_matrix"][0]) == 3 for row in rows.values())
    assert all(0 <= row["estimated_accuracy"] <= 1 for row in rows.values())
    assert report["agreement_over_time"] and report["agreement_over_time"][0]["n_answers"] >= 1
    assert sum(b["n_answers"] for b in report["agreement_over_time"]) == len(CROWD)
    assert sum(map(sum, report["confusion"]["counts"])) == len(CROWD)
    assert set(report["agreement"]["per_label"]) == set(LABELS)
    # Too few answers to flag anyone (10 answers, or 5 gold ones).
    assert not any(row["flagged"] for row in rows.values())
    assert {row["flag_basis"] for row in rows.values()} == {None}


def test_fleiss_kappa_equals_statsmodels_when_every_sample_has_three_answers(manager: User) -> None:
    project = project_create(creator=manager, name="K", labels=LABELS, schema={"x": "numeric"})
    three = [a for a in CROWD if a[0] in ("s1", "s3", "g1")]
    # The same annotator answering again: only the latest answer counts for agreement.
    _store(project, [("s1", "ann", "dog", None), *three], timezone.now())
    report = project_audit(project=project)
    people, samples = ["ann", "bob", "cyd"], ["g1", "s1", "s3"]
    ratings = np.zeros((3, 3), dtype=int)
    for s, u, label, _ in three:
        ratings[samples.index(s), people.index(u)] = LABELS.index(label)
    table, _ = aggregate_raters(ratings, n_cat=3)
    assert report["agreement"]["fleiss_kappa"] == pytest.approx(statsmodels_fleiss(table), abs=1e-4)
    assert report["agreement"]["n_answers"] == 9 and report["n_annotations"] == 10


def test_annotators_below_the_threshold_are_flagged_on_gold_first(manager: User) -> None:
    project = project_create(
        creator=manager, name="F", labels=LABELS, schema={"x": "numeric"}, settings={"audit": {"flag_below": 0.7}}
    )
    answers = []
    for i in range(6):
        truth = LABELS[i % 3]
        answers += [(f"g{i}", "good", truth, 1000), (f"g{i}", "poor", "cat", 1000)]
    for i in range(12):
        answers += [(f"s{i}", "good", "dog", 1000), (f"s{i}", "poor", "dog", 1000)]
    ids = _store(project, answers, timezone.now())
    gold_set(project_id=project.pk, items=[(ids[f"g{i}"], LABELS[i % 3]) for i in range(6)], actor=manager)
    rows = {row["username"]: row for row in project_audit(project=project)["annotators"]}
    assert (rows["poor"]["flagged"], rows["poor"]["flag_basis"]) == (True, "gold")
    assert rows["poor"]["gold_accuracy"] == pytest.approx(2 / 6, abs=1e-4)
    assert (rows["good"]["flagged"], rows["good"]["gold_accuracy"]) == (False, 1.0)


def test_empty_project_has_the_shape_and_no_figures(project: Project) -> None:
    report = project_audit(project=project)
    assert report["annotators"] == [] and report["n_annotations"] == 0
    assert report["agreement"]["krippendorff_alpha"] is None
    assert report["agreement"]["pairwise_cohen_kappa"] == []


def test_a_large_project_answers_from_the_figures_the_worker_stored(
    manager: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_create(
        creator=manager, name="L", labels=LABELS, schema={"x": "numeric"}, settings={"audit": {"flag_below": 0.7}}
    )
    answers = [
        (f"s{i}", name, "cat" if name == "good" or i % 2 else "dog", 1000)
        for i in range(12)
        for name in ("good", "poor")
    ]
    _store(project, answers, timezone.now())
    monkeypatch.setattr(audit, "LIVE_LIMIT", 10)  # 24 answers: "large"
    assert not audit.is_small(project_id=project.pk)

    pending = audit.audit_report(project=project)
    assert pending["source"] == "pending" and pending["annotators"] == []
    assert set(pending["agreement"]) >= {"krippendorff_alpha", "fleiss_kappa", "pairwise_cohen_kappa"}

    assert audit.audit_refresh(project_id=project.pk) is True
    assert audit.audit_refresh(project_id=project.pk) is False  # nothing new: a redelivery is harmless
    project.refresh_from_db()
    stored = audit.audit_report(project=project)
    live = audit.project_audit(project=project)
    assert stored["source"] == "stored" and stored["computed_at"]
    assert stored["agreement"] == live["agreement"] and stored["annotators"] == live["annotators"]
    rows = {row["username"]: row for row in stored["annotators"]}
    assert rows["poor"]["flag_basis"] == "estimated" and rows["poor"]["flagged"]
    # A new threshold applies at once, without recomputing.
    project.settings = {**project.settings, "audit": {**project.settings["audit"], "flag_below": 0.0}}
    project.save(update_fields=["settings"])
    assert not any(row["flagged"] for row in audit.audit_report(project=project)["annotators"])

    # A new answer makes the stored figures stale: the next refresh recomputes them.
    _store(project, [("t1", "good", "cat", 500)], timezone.now())
    assert audit.audit_refresh(project_id=project.pk) is True
    project.refresh_from_db()
    assert audit.audit_report(project=project)["n_annotations"] == 25
    assert audit.audit_refresh(project_id=project.pk + 1000) is False
    # A run that read less than what another run stored meanwhile leaves the newer figures alone.
    entry = DerivedState.read(project_id=project.pk, key=audit.REPORT_KEY)
    ahead = {**entry, "marks": {**entry["marks"], "answer": entry["marks"]["answer"] + 1}}
    DerivedState.write(project_id=project.pk, key=audit.REPORT_KEY, value=ahead)
    assert audit.audit_refresh(project_id=project.pk) is False
    assert DerivedState.read(project_id=project.pk, key=audit.REPORT_KEY) == ahead


def test_labels_changing_on_a_large_project_enqueue_one_refresh(
    manager: User, monkeypatch: pytest.MonkeyPatch, run_on_commit: Any
) -> None:
    from django.core.cache import cache

    from feedback import audit_tasks

    project = project_create(creator=manager, name="E", labels=LABELS, schema={"x": "numeric"})
    ids = _store(project, [(f"s{i}", "ann", "cat", None) for i in range(6)], timezone.now())
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(audit_tasks.refresh_audit, "apply_async", lambda args, **kw: calls.append(args))
    cache.clear()

    def label(sample: str, value: str) -> None:
        with run_on_commit():
            labels_set(
                project_id=project.pk,
                decisions=[
                    LabelDecision(
                        sample_id=ids[sample],
                        label=value,
                        confidence=1.0,
                        method=LabelMethod.MAJORITY,
                        n_annotations=1,
                    )
                ],
                actor=None,
            )

    label("s0", "cat")  # small: audited live, nothing to enqueue
    assert calls == []
    cache.clear()  # the delay passes: the project is looked at again
    monkeypatch.setattr(audit, "LIVE_LIMIT", 3)
    label("s1", "cat")
    label("s2", "dog")  # within the delay: the first request covers it
    assert calls == [(project.pk,)]
