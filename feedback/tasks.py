"""Celery tasks: thin wrappers that take ids, tolerate missing rows and call a service."""

from celery import shared_task
from django.conf import settings

from feedback import datasets, policy, selection, training
from feedback.audit_tasks import *  # noqa: F403  (tasks of their own modules, registered here)
from feedback.selection_tasks import *  # noqa: F403
from labeling.models import Project


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT,
    time_limit=settings.TRAINING_TIME_LIMIT,
)
def train_run(run_id: int) -> None:
    training.training_run_execute(run_id=run_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def dataset_cut_and_train(project_id: int, trigger: str = "labels") -> None:
    """Cut a version from the new labels and request its training run (found if it exists)."""
    seen = None
    try:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return
        result = datasets.dataset_version_cut(project_id=project_id, trigger=trigger)
        seen = result.seen_change_id
        if result.version.size > 0:
            training.training_run_request(project=project, dataset_version=result.version, trigger=trigger)
    finally:
        policy.cut_done(project_id=project_id, seen_change_id=seen)
    # Labels committed while this cut ran could not claim a cut of their own: look again.
    policy.on_labels_finalized(project_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rescore_project(project_id: int, model_version_id: int) -> None:
    selection.project_rescore(project_id=project_id, model_version_id=model_version_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def score_samples(project_id: int, first_id: int, last_id: int) -> None:
    selection.samples_score(project_id=project_id, first_id=first_id, last_id=last_id)
