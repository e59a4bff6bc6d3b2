"""Training-set versions: exact diffs, O(changes) rows, time travel, content hash."""

from typing import Any

from django.contrib.auth.models import User

from feedback import datasets, sethash
from feedback.models import DatasetMember
from labeling.models import LabelMethod, Project
from labeling.services.labels import LabelDecision, labels_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk


def _project(manager: User) -> Project:
    return project_create(creator=manager, name="D", labels=["a", "b"], schema={"x": "numeric"})


def _seed(project: Project, n: int, label: str = "a") -> list[int]:
    items = [NewSample(external_id=f"e{i}", data={"x": i}, label=label) for i in range(n)]
    return [i for i in samples_add_bulk(project=project, items=items, actor=None).sample_ids if i is not None]


def _relabel(project: Project, ids: list[int], label: str) -> None:
    decisions = [
        LabelDecision(sample_id=i, label=label, confidence=1.0, method=LabelMethod.REVIEW, n_annotations=1) for i in ids
    ]
    labels_set(project_id=project.pk, decisions=decisions, actor=None)


def _pairs(version: Any) -> set[tuple[str, str]]:
    return {(row["external_id"], row["label"]) for row in datasets.rows_at(version=version)}


def test_first_cut_then_nothing_changed(manager: User) -> None:
    project = _project(manager)
    _seed(project, 10)
    first = datasets.dataset_version_cut(project_id=project.pk, trigger="manual")
    assert first.created and first.version.version == 1 and first.version.size == 10 and first.version.parent is None
    again = datasets.dataset_version_cut(project_id=project.pk, trigger="manual")
    assert not again.created and again.version.pk == first.version.pk


def test_exact_diff_and_rows_grow_with_changes(manager: User) -> None:
    project = _project(manager)
    ids = _seed(project, 100)
    v1 = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    rows_before = DatasetMember.objects.filter(project=project).count()
    _relabel(project, ids[:7], "b")
    samples_add_bulk(project=project, items=[NewSample(external_id="new", data={"x": 1}, label="b")], actor=None)
    v2 = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    assert (v2.n_added, v2.n_changed, v2.n_removed) == (1, 7, 0)
    assert v2.parent_id == v1.pk and v2.size == 101
    assert DatasetMember.objects.filter(project=project).count() - rows_before == 8  # O(changes), not O(set)
    items = datasets.diff_items(project_id=project.pk, older=v1, newer=v2)
    assert sorted(item["change"] for item in items) == ["added"] + ["changed"] * 7
    assert {item["external_id"] for item in items if item["change"] == "changed"} == {f"e{i}" for i in range(7)}


def test_time_travel_gives_the_same_rows(manager: User) -> None:
    project = _project(manager)
    ids = _seed(project, 20)
    v1 = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    before = _pairs(v1)
    _relabel(project, ids[:5], "b")
    datasets.dataset_version_cut(project_id=project.pk, trigger="manual")
    _relabel(project, ids[:5], "a")
    v3 = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    assert _pairs(v1) == before
    assert _pairs(v3) == before  # relabeled back: same pairs ...
    assert v3.hash == v1.hash  # ... same content hash, whatever the path


def test_hash_is_the_set_hash_of_the_rows(manager: User) -> None:
    project = _project(manager)
    ids = _seed(project, 30)
    _relabel(project, ids[3:9], "b")
    version = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    _relabel(project, ids[:2], "b")
    child = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    for v in (version, child):
        assert v.hash == sethash.to_hex(sethash.of_pairs(_pairs(v)))


def test_net_zero_changes_make_no_version(manager: User) -> None:
    project = _project(manager)
    ids = _seed(project, 5)
    v1 = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    _relabel(project, ids[:1], "b")
    _relabel(project, ids[:1], "a")
    result = datasets.dataset_version_cut(project_id=project.pk, trigger="manual")
    assert not result.created and result.version.pk == v1.pk and result.seen_change_id > v1.last_change_id
