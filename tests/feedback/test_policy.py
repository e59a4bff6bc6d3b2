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


def test_schedule_cuts_and_trains_when_due_and_only_then(project: Project, rows: Any, run_on_commit: Any) -> None:
    from feedback import tasks

    project.settings["retrain"] = {**project.settings["retrain"], "min_new_labels": 10**6, "every_hours": 6}
    project.save()
    with run_on_commit():
        samples_ingest(project=project, items=rows(8, labeled=True), actor=None)
    assert not DatasetVersion.objects.filter(project=project).exists()  # below min_new_labels
    with run_on_commit():
        assert tasks.retrain_scheduled() == [project.pk]
    run = TrainingRun.objects.get(project=project)
    assert run.trigger == "schedule" and run.dataset_version.trigger == "schedule" and run.status == "succeeded"
    later = timezone.now() + timedelta(hours=7)
    with run_on_commit():
        assert policy.retrain_on_schedule() == []  # trained within the last 6 hours
        assert policy.retrain_on_schedule(now=later) == []  # due, but nothing new to train
        samples_ingest(project=project, items=rows(2, start=50, labeled=True), actor=None)
        assert policy.retrain_on_schedule() == []
        assert policy.retrain_on_schedule(now=later) == [project.pk]
    assert TrainingRun.objects.filter(project=project).count() == 2
    # A new training config makes the schedule train the latest version again.
    project.settings["training"] = {"family": "logistic_regression", "params": {"C": 2.0}}
    project.save()
    with run_on_commit():
        assert policy.retrain_on_schedule(now=later + timedelta(hours=7)) == [project.pk]
    assert TrainingRun.objects.filter(project=project).count() == 3
    assert DatasetVersion.objects.filter(project=project).count() == 2


def test_drift_trigger_finds_the_run_of_an_unchanged_version(project: Project, rows: Any, run_on_commit: Any) -> None:
    from feedback import tasks

    with run_on_commit():
        samples_ingest(project=project, items=rows(6, labeled=True), actor=None)
    first = TrainingRun.objects.get(project=project)
    with run_on_commit():
        tasks.dataset_cut_and_train.delay(project.pk, "drift")  # what the drift check enqueues
    assert list(TrainingRun.objects.filter(project=project)) == [first]
    project.settings["retrain"]["min_new_labels"] = 10**6
    project.save()
    with run_on_commit():
        samples_ingest(project=project, items=rows(2, start=60, labeled=True), actor=None)
        policy.retrain_for_drift(project_id=project.pk)  # the drift check's hook
    newest = TrainingRun.objects.filter(project=project).latest("id")
    assert newest.trigger == "drift" and newest.dataset_version.version == 2


def test_beat_schedule_names_registered_tasks() -> None:
    from django.conf import settings

    from labelloop.celery import app

    app.loader.import_default_modules()
    names = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert names == {"feedback.tasks.retrain_scheduled", "feedback.tasks.datasets_prune_all"}
    assert names <= set(app.tasks)
    assert (
        app.tasks["feedback.tasks.train_run"].acks_late and app.tasks["feedback.tasks.train_run"].reject_on_worker_lost
    )
    assert app.amqp.router.route({}, "feedback.tasks.train_run")["queue"].name == "training"
