"""feedback/drift_service.py on the database: windows of production samples against the latest
training set, per-sample drift scores, drift tasks in the queue, and the retrain it sets off."""

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feedback import drift_service
from feedback.ingest import samples_ingest
from feedback.models import DatasetVersion, RetrainState, SampleScore, TrainingRun
from labeling.models import Project, Task, TaskStatus
from labeling.services.projects import project_create, project_update

pytestmark = pytest.mark.django_db
START = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = 100
SHIFTED = [f"e{i}" for i in range(2000, 2200)]


def items(
    n: int, *, start: int, shift: float = 0.0, colours: tuple[float, ...] = (0.5, 0.3, 0.2), labeled: bool = False
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(start)
    out = []
    for i in range(n):
        x = float(rng.normal(shift, 1.0))
        item: dict[str, Any] = {
            "external_id": f"e{start + i}",
            "data": {
                "x": round(x, 4),
                "y": round(float(rng.normal(0, 1)), 4),
                "colour": str(rng.choice(["red", "green", "blue"], p=list(colours))),
            },
            "observed_at": (START + timedelta(minutes=start + i)).isoformat(),
            "prediction": {"label": "a", "probabilities": {"a": 0.6, "b": 0.4}},
        }
        if labeled:
            item["label"] = "a" if x < 0 else "b"
            del item["prediction"]
        out.append(item)
    return out


@pytest.fixture
def drifting(manager: User, run_on_commit: Any) -> Project:
    """A trained project (seed labels, first model), then 3 stationary windows and 2 shifted ones."""
    project = project_create(
        creator=manager,
        name="drifting",
        labels=["a", "b"],
        schema={"x": "numeric", "y": "numeric", "colour": "categorical"},
        settings={
            "retrain": {"min_new_labels": 10**6},
            "drift": {"window": WINDOW},
            "selection": {"batch_size": 10, "budgets": {"drift": 0.5}},
        },
    )
    samples_ingest(project=project, items=items(300, start=0, labeled=True), actor=None)
    project_update(project_id=project.pk, changes={"retrain": {"min_new_labels": 1}})
    with run_on_commit():
        samples_ingest(project=project, items=items(1, start=300, labeled=True), actor=None)
    project_update(project_id=project.pk, changes={"retrain": {"min_new_labels": 10**6}})
    assert DatasetVersion.objects.filter(project=project, size__gt=0).exists()
    samples_ingest(project=project, items=items(3 * WINDOW, start=1000), actor=None)
    samples_ingest(project=project, items=items(2 * WINDOW, start=2000, shift=2.5, colours=(0.1, 0.2, 0.7)), actor=None)
    return Project.objects.get(pk=project.pk)


def test_windows_answer_the_api_shape_and_find_the_shift(drifting: Project) -> None:
    body = drift_service.project_drift(project=drifting, window=WINDOW, limit=10)
    assert (
        body["reference"]["dataset_version"]
        == DatasetVersion.objects.filter(project=drifting).latest("version").version
    )
    windows = body["windows"]
    assert [w["n"] for w in windows] == [WINDOW] * 5
    assert [w["drifted"] for w in windows] == [False, False, False, True, True]
    for w in windows:
        assert set(w) >= {"start", "end", "n", "drifted", "score", "features"}
        assert set(w["features"]) == {"x", "y", "colour"}
        for f in w["features"].values():
            assert set(f) >= {"test", "statistic", "p_value", "drifted"}
        assert datetime.fromisoformat(w["start"]) <= datetime.fromisoformat(w["end"])
    assert windows[3]["features"]["x"]["drifted"] and windows[3]["features"]["colour"]["drifted"]
    assert not windows[3]["features"]["y"]["drifted"]
    assert windows[3]["features"]["x"]["test"] == "ks" and windows[3]["features"]["colour"]["test"] == "chi2"
    assert windows[4]["score"] > 0.8 > windows[0]["score"]
    # Windows are aligned on the first sample: the newest two of them, and bigger ones.
    assert [w["index"] for w in drift_service.project_drift(project=drifting, window=WINDOW, limit=2)["windows"]] == [
        3,
        4,
    ]
    big = drift_service.project_drift(project=drifting, window=250, domain=False)["windows"]
    assert [w["n"] for w in big] == [250, 250] and big[0]["score_kind"] == "max_effect"
    # A last window still filling: the newest one only, its 200 samples.
    partial = drift_service.project_drift(project=drifting, window=300, limit=1, domain=False)["windows"]
    assert [(w["index"], w["n"], w["complete"]) for w in partial] == [(1, 200, False)]


def test_windows_by_time(drifting: Project) -> None:
    # Samples are a minute apart: the stationary ones at minutes 1000-1299, the shifted at 2000-2199.
    windows = drift_service.project_drift(project=drifting, seconds=100 * 60, domain=False, limit=50)["windows"]
    assert [w["n"] for w in windows] == [100, 100, 100, 100, 100]
    assert [w["drifted"] for w in windows] == [False, False, False, True, True]


def test_scan_scores_samples_queues_drift_and_is_idempotent(drifting: Project) -> None:
    result = drift_service.drift_scan(project_id=drifting.pk)
    assert (result.scanned, result.drifted, result.retrain) == (3, 2, False)
    shifted = SampleScore.objects.filter(sample__external_id__in=SHIFTED, sample__project=drifting)
    stationary_scanned = SampleScore.objects.filter(
        sample__project=drifting, sample__external_id__in=[f"e{i}" for i in range(1200, 1300)]
    )
    assert shifted.filter(drift__isnull=True).count() == 0
    assert np.mean([s.drift for s in shifted]) > 0.6
    assert {s.drift for s in stationary_scanned} == {0.0}
    # The re-rank gives the drift budget (half of each batch here) to the drifted samples.
    head = Task.objects.filter(project=drifting, status=TaskStatus.PENDING).order_by("-priority", "id")[:20]
    reasons = [t.reason for t in head]
    assert reasons.count("drift") == 10
    assert all(t.sample.external_id in SHIFTED for t in head if t.reason == "drift")
    with CaptureQueriesContext(connection) as queries:
        assert drift_service.drift_scan(project_id=drifting.pk).scanned == 0
    # Nothing new to measure: a few bounded queries, and no sample's data read.
    assert len(queries) <= 12
    assert not [q for q in queries.captured_queries if '"labeling_sample"."data"' in q["sql"]]


def test_a_drifted_window_retrains_once_with_on_drift(drifting: Project, run_on_commit: Any) -> None:
    project_update(project_id=drifting.pk, changes={"retrain": {"on_drift": True}})
    # Labels that the count trigger alone would not act on yet.
    from labeling.models import LabelMethod, Sample
    from labeling.services.labels import LabelDecision, labels_set

    some = Sample.objects.filter(project=drifting, external_id__startswith="e10").order_by("pk")[:5]
    labels_set(
        project_id=drifting.pk,
        decisions=[
            LabelDecision(sample_id=s.pk, label="a", confidence=1.0, method=LabelMethod.MAJORITY, n_annotations=1)
            for s in some
        ],
        actor=None,
    )
    runs = TrainingRun.objects.filter(project=drifting).count()
    with run_on_commit():
        result = drift_service.drift_scan(project_id=drifting.pk)
    assert result.retrain
    assert RetrainState.objects.get(project_id=drifting.pk).drift_triggered_at is not None
    newest = DatasetVersion.objects.filter(project=drifting).latest("version")
    assert newest.trigger == "drift"
    assert TrainingRun.objects.filter(project=drifting).count() == runs + 1
    assert TrainingRun.objects.filter(project=drifting).latest("id").trigger == "drift"
    # More drifted windows against the version the drift cut: no second retrain.
    samples_ingest(project=drifting, items=items(WINDOW, start=3000, shift=2.5, colours=(0.1, 0.2, 0.7)), actor=None)
    with run_on_commit():
        again = drift_service.drift_scan(project_id=drifting.pk)
    assert again.scanned == 1 and not again.retrain
    assert TrainingRun.objects.filter(project=drifting).count() == runs + 1


def test_ingest_sets_off_a_scan_after_commit(drifting: Project, run_on_commit: Any) -> None:
    with run_on_commit():
        samples_ingest(project=drifting, items=items(1, start=5000), actor=None)
    assert not SampleScore.objects.filter(sample__project=drifting, sample__external_id__in=SHIFTED, drift=None)


def test_no_reference_no_windows(manager: User) -> None:
    project = project_create(creator=manager, name="new", labels=["a", "b"], schema={"x": "numeric"})
    samples_ingest(project=project, items=[{"external_id": "1", "data": {"x": 1.0}}], actor=None)
    assert drift_service.project_drift(project=project)["windows"] == []
    assert drift_service.drift_scan(project_id=project.pk).scanned == 0
    project_update(project_id=project.pk, changes={"drift": {"reference_version": 7}})
    with pytest.raises(drift_service.DriftError):
        drift_service.project_drift(project=Project.objects.get(pk=project.pk))


def test_a_pinned_reference_is_used_instead_of_the_latest(drifting: Project) -> None:
    from feedback.datasets import dataset_version_cut

    first = DatasetVersion.objects.filter(project=drifting, size__gt=0).earliest("version")
    # A newer version with the shifted samples labeled: against it, the shifted windows look less new.
    samples_ingest(
        project=drifting, items=items(200, start=7000, shift=2.5, colours=(0.1, 0.2, 0.7), labeled=True), actor=None
    )
    newer = dataset_version_cut(project_id=drifting.pk, trigger="manual").version
    assert newer.version > first.version
    latest = drift_service.project_drift(project=drifting, limit=1, domain=False)
    assert latest["reference"] == {"dataset_version": newer.version, "n": newer.size}
    project_update(project_id=drifting.pk, changes={"drift": {"reference_version": first.version}})
    pinned = drift_service.project_drift(project=Project.objects.get(pk=drifting.pk), limit=1, domain=False)
    assert pinned["reference"] == {"dataset_version": first.version, "n": first.size}
    assert pinned["windows"][0]["features"]["x"]["statistic"] > latest["windows"][0]["features"]["x"]["statistic"]


def test_a_request_reads_a_bounded_subsample_and_counts_whole_windows(
    drifting: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drift_service, "REQUEST_ROWS", 100)
    asked: list[int] = []
    data_of = drift_service._data_of

    def counted(ids: Any) -> Any:
        asked.append(len(ids))
        return data_of(ids)

    monkeypatch.setattr(drift_service, "_data_of", counted)
    windows = drift_service.project_drift(project=drifting, window=WINDOW, limit=10)["windows"]
    assert sum(asked) - asked[0] == 100  # the reference first, then 20 of each window's 100 samples
    assert [w["n"] for w in windows] == [WINDOW] * 5
    assert windows[3]["drifted"] and windows[4]["drifted"]  # 20 samples each still show the shift
    monkeypatch.setattr(drift_service, "REQUEST_IDS", 2 * WINDOW)
    assert [w["index"] for w in drift_service.project_drift(project=drifting, window=WINDOW)["windows"]] == [3, 4]
