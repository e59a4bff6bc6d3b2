"""Celery tasks: thin wrappers that take ids, tolerate missing rows and call a service."""

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import TimeLimitExceeded
from django.conf import settings

from feedback import audit_tasks, datasets, policy, selection, training
from feedback.audit_tasks import *  # noqa: F403  (tasks of their own modules, registered here)
from feedback.selection_tasks import *  # noqa: F403
from labeling.models import Project
from labeling.project_settings import ProjectSettings

logger = logging.getLogger(__name__)


class TrainingTask(Task):
    """A hard time limit kills the pool process before the run can say so: the worker's main
    process marks the run failed here instead (a lost worker is not a failure: the message is
    requeued, reject_on_worker_lost, and the run trains again)."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TimeLimitExceeded) and args:
            training.training_run_fail(
                run_id=int(args[0]), error=f"the run exceeded the hard time limit of {settings.TRAINING_TIME_LIMIT} s"
            )


@shared_task(
    base=TrainingTask,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT,
    time_limit=settings.TRAINING_TIME_LIMIT,
)
def train_run(run_id: int) -> None:
    training.training_run_execute(run_id=run_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def dataset_cut_and_train(project_id: int, trigger: str = "labels") -> None:
    """Cut a version from the new labels and request its training run (found if it exists).

    ``trigger`` is "labels" (min_new_labels), "drift" (retrain.on_drift), "schedule"
    (retrain.every_hours) or "manual"."""
    seen = None
    try:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return
        result = datasets.dataset_version_cut(project_id=project_id, trigger=trigger)
        seen = result.seen_change_id
        if result.version.size > 0:
            training.training_run_request(project=project, dataset_version=result.version, trigger=trigger)
        # The label-quality audit of each new version (issue 6), queued after its training run;
        # looked up by name so that this module works before that task exists.
        audit = getattr(audit_tasks, "find_label_issues", None)
        if result.created and audit is not None:
            audit.delay(project_id, result.version.pk)
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


@shared_task(acks_late=True, reject_on_worker_lost=True)
def retrain_scheduled() -> list[int]:
    """Periodic (celery beat, CELERY_BEAT_SCHEDULE): cut and train the projects whose
    retrain.every_hours is due. Optional: everything else runs without beat."""
    return policy.retrain_on_schedule()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def datasets_prune_all() -> dict[int, list[int]]:
    """Periodic: prune the versions past each project's datasets.retention_days."""
    out: dict[int, list[int]] = {}
    for project_id, stored in Project.objects.values_list("pk", "settings").iterator(chunk_size=500):
        if ProjectSettings.of(stored or {}).datasets.get("retention_days") is None:
            continue
        result = datasets.dataset_versions_prune(project_id=project_id)
        if result.pruned:
            logger.info("project %s: pruned dataset versions %s", project_id, result.pruned)
            out[project_id] = result.pruned
    return out
