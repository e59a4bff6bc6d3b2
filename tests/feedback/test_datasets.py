"""Training-set versions: exact diffs, O(changes) rows, time travel, content hash."""

import io
from typing import Any
from unittest import mock

import pytest
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


@pytest.mark.parametrize("probe_max", [0, 10**6])
def test_both_read_plans_of_a_cut_give_the_same_version(manager: User, probe_max: int) -> None:
    """PostgreSQL reads the touched samples by index probes (few changes) or by joins (many)."""
    project = _project(manager)
    ids = _seed(project, 30)
    with mock.patch.object(datasets, "PROBE_MAX_CHANGES", probe_max):
        datasets.dataset_version_cut(project_id=project.pk, trigger="manual")
        _relabel(project, ids[:4], "b")
        v2 = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    assert (v2.n_added, v2.n_changed, v2.n_removed, v2.size) == (0, 4, 0, 30)
    assert v2.hash == sethash.to_hex(sethash.of_pairs(_pairs(v2)))
    assert {label for _, label in _pairs(v2)} == {"a", "b"}


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


# ---------------------------------------------------------------- tags, pruning, time travel

from datetime import timedelta  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from feedback import tasks, training  # noqa: E402
from feedback.models import DatasetTag, DatasetVersion, ModelVersion  # noqa: E402


def _age(project: Project, days: int) -> None:
    DatasetVersion.objects.filter(project=project).update(created_at=timezone.now() - timedelta(days=days))


def _chain(manager: User, n_versions: int = 5) -> tuple[Project, list[DatasetVersion]]:
    """Versions 1..n, each relabeling two samples, so every version has rows of its own."""
    project = _project(manager)
    ids = _seed(project, 12)
    versions = [datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version]
    for k in range(1, n_versions):
        _relabel(project, ids[2 * k - 2 : 2 * k], "b")
        versions.append(datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version)
    return project, versions


def test_prune_keeps_tagged_trained_latest_and_the_rows_of_the_rest(manager: User, run_on_commit: Any) -> None:
    project, versions = _chain(manager)
    before = {v.version: _pairs(v) for v in versions}
    datasets.dataset_tag_add(project_id=project.pk, version=2, name="audited-2026-q4", actor=manager)
    # Version 4 trained a model: its members must stay.
    with run_on_commit():
        training.training_run_request(project=project, dataset_version=versions[3], trigger="manual")
    assert ModelVersion.objects.filter(dataset_version=versions[3]).exists()
    _age(project, 40)
    rows_before = DatasetMember.objects.filter(project=project).count()
    result = datasets.dataset_versions_prune(project_id=project.pk, retention_days=30)
    assert result.pruned == [1, 3]
    assert result.kept == {2: "tagged 'audited-2026-q4'", 4: "a model version was trained on it", 5: "latest version"}
    assert result.members_deleted > 0
    assert DatasetMember.objects.filter(project=project).count() == rows_before - result.members_deleted
    for v in DatasetVersion.objects.filter(project=project):
        if v.version in (1, 3):
            assert v.pruned_at is not None and v.hash == versions[v.version - 1].hash  # the row and hash remain
            with pytest.raises(datasets.VersionPruned):
                list(datasets.rows_at(version=v))
        else:
            assert _pairs(v) == before[v.version]  # surviving versions read exactly as before
    again = datasets.dataset_versions_prune(project_id=project.pk, retention_days=30)
    assert again.pruned == [] and again.members_deleted == 0


def test_prune_only_deletes_rows_no_surviving_version_needs(manager: User) -> None:
    project, _ = _chain(manager, 4)
    _age(project, 10)
    # v1's members of the two samples relabeled in v2 are needed by v1 only; the other ten by every version.
    result = datasets.dataset_versions_prune(project_id=project.pk, retention_days=5)
    assert result.pruned == [1, 2, 3]
    latest = DatasetVersion.objects.get(project=project, version=4)
    assert DatasetMember.objects.filter(project=project).count() == latest.size == 12
    assert _pairs(latest) == {(f"e{i}", "b" if i < 6 else "a") for i in range(12)}
    child = datasets.dataset_version_cut(project_id=project.pk, trigger="manual")
    assert not child.created  # cutting still works from the surviving latest version


def test_retention_setting_dry_run_command_and_periodic_task(manager: User) -> None:
    project, _ = _chain(manager, 3)
    _age(project, 3)
    assert datasets.dataset_versions_prune(project_id=project.pk).pruned == []  # no retention: keep all
    project.settings["datasets"] = {"retention_days": 2}
    project.save()
    dry = datasets.dataset_versions_prune(project_id=project.pk, dry_run=True)
    assert dry.pruned == [1, 2] and not DatasetVersion.objects.filter(pruned_at__isnull=False).exists()
    out = io.StringIO()
    call_command("datasets_prune", "--project", str(project.pk), "--dry-run", stdout=out)
    assert "would prune v1, v2" in out.getvalue()
    assert tasks.datasets_prune_all() == {project.pk: [1, 2]}
    assert set(DatasetVersion.objects.filter(pruned_at__isnull=False).values_list("version", flat=True)) == {1, 2}


def test_tags_are_unique_per_project_and_protect_until_removed(manager: User) -> None:
    project, _ = _chain(manager, 3)
    tag = datasets.dataset_tag_add(project_id=project.pk, version=1, name="gold", actor=manager)
    assert datasets.dataset_tag_add(project_id=project.pk, version=1, name="gold").pk == tag.pk  # idempotent
    with pytest.raises(datasets.TagConflict, match="already on version 1"):
        datasets.dataset_tag_add(project_id=project.pk, version=2, name="gold")
    other = _project(manager)
    _seed(other, 1)
    datasets.dataset_version_cut(project_id=other.pk, trigger="manual")
    datasets.dataset_tag_add(project_id=other.pk, version=1, name="gold")  # another project may reuse it
    _age(project, 10)
    assert datasets.dataset_versions_prune(project_id=project.pk, retention_days=1).pruned == [2]
    assert datasets.dataset_tag_remove(project_id=project.pk, version=1, name="gold")
    assert not datasets.dataset_tag_remove(project_id=project.pk, version=1, name="gold")
    assert datasets.dataset_versions_prune(project_id=project.pk, retention_days=1).pruned == [1]
    assert DatasetTag.objects.filter(project=other).count() == 1


def test_any_version_trains_on_the_same_rows_again(manager: User, run_on_commit: Any) -> None:
    project = _project(manager)
    project.settings["retrain"]["min_new_labels"] = 10**6
    project.save()
    ids = _seed(project, 30)
    _relabel(project, ids[::2], "b")
    v1 = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    with run_on_commit():
        first, _ = training.training_run_request(project=project, dataset_version=v1, trigger="manual")
    _relabel(project, ids[:10], "a")
    datasets.dataset_version_cut(project_id=project.pk, trigger="manual")
    # Train version 1 again, later, with another config: the same rows, checked against its hash.
    project.settings["training"] = {"family": "logistic_regression", "params": {"C": 0.5}}
    project.save()
    with run_on_commit():
        again, created = training.training_run_request(project=project, dataset_version=v1, trigger="manual")
    assert created and again.pk != first.pk
    models = {m.run_id: m for m in ModelVersion.objects.filter(project=project)}
    for run in (first, again):
        lineage = models[run.pk].lineage
        assert lineage["rows_hash"] == v1.hash and lineage["n_rows"] == v1.size == 30
    assert models[again.pk].params["C"] == 0.5
