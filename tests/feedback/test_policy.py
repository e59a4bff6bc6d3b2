"""Cutting and training by themselves: after min_new_labels new labels, once per burst."""

from datetime import timedelta
from typing import Any
from unittest import mock

from django.utils import timezone

from feedback import datasets, policy
from feedback.ingest import samples_ingest
from feedback.models import DatasetVersion, RetrainState, TrainingRun
from labeling.models import Project


def test_below_threshold_nothing_happens(project: Project, rows: Any, run_on_commit: Any) -> None:
    with run_on_commit():
        samples_ingest(project=project, items=rows(4, labeled=True), actor=None)  # threshold is 5
    assert not DatasetVersion.objects.filter(project=project).exists()


def test_threshold_cuts_and_trains(project: Project, rows: Any, run_on_commit: Any) -> None:
    with run_on_commit():
        samples_ingest(project=project, items=rows(6, labeled=True), actor=None)
    version = DatasetVersion.objects.get(project=project)
    assert version.trigger == "labels" and version.size == 6
    assert TrainingRun.objects.filter(dataset_version=version).count() == 1
    assert RetrainState.objects.get(project=project).cut_requested_at is None


def test_a_burst_enqueues_once_and_a_lost_request_is_renewed(project: Project, rows: Any, run_on_commit: Any) -> None:
    with mock.patch("feedback.tasks.dataset_cut_and_train.delay") as delay:
        for start in range(0, 30, 6):
            with run_on_commit():
                samples_ingest(project=project, items=rows(6, start=start, labeled=True), actor=None)
        assert delay.call_count == 1
        RetrainState.objects.filter(project=project).update(
            cut_requested_at=timezone.now() - policy.PATIENCE - timedelta(seconds=1)
        )
        policy.on_labels_finalized(project.pk)
        assert delay.call_count == 2


def test_broker_failure_is_logged_not_raised_and_retried_later(project: Project, rows: Any, run_on_commit: Any) -> None:
    with mock.patch("feedback.tasks.dataset_cut_and_train.delay", side_effect=ConnectionError("broker down")) as delay:
        with run_on_commit():
            samples_ingest(project=project, items=rows(6, labeled=True), actor=None)
        assert delay.call_count == 1
        assert RetrainState.objects.get(project=project).cut_requested_at is None  # claim released
    with run_on_commit():
        samples_ingest(project=project, items=rows(1, start=100, labeled=True), actor=None)
    assert DatasetVersion.objects.filter(project=project).count() == 1  # the next label re-checked


def test_labels_that_arrive_during_a_cut_get_their_own(project: Project, rows: Any, run_on_commit: Any) -> None:
    real_cut = datasets.dataset_version_cut
    arrived: list[bool] = []

    def cut_while_labels_arrive(**kwargs: Any) -> datasets.CutResult:
        result = real_cut(**kwargs)
        if not arrived:  # labels committed after the cut read the changes, while it still holds the claim
            arrived.append(True)
            samples_ingest(project=project, items=rows(6, start=50, labeled=True), actor=None)
        return result

    with mock.patch("feedback.datasets.dataset_version_cut", side_effect=cut_while_labels_arrive), run_on_commit():
        samples_ingest(project=project, items=rows(6, labeled=True), actor=None)
    assert list(DatasetVersion.objects.filter(project=project).order_by("version").values_list("size", flat=True)) == [
        6,
        12,
    ]
