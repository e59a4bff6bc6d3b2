"""Celery tasks of label-quality audits (imported by feedback.tasks so that the worker finds them).

Routed to the training queue (labelloop.settings: ``feedback.audit_tasks.*``): the finder fits the
project's pipeline once per fold, as heavy as a training run; the audit refresh reads every answer
of a project and runs Dawid-Skene and the agreement metrics over them.
"""

from celery import shared_task
from django.conf import settings

from feedback import audits
from labeling import audit

__all__ = ["find_label_issues", "refresh_audit"]


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT,
    time_limit=settings.TRAINING_TIME_LIMIT,
)
def find_label_issues(project_id: int, dataset_version_id: int | None = None, force: bool = False) -> None:
    """Flag the likely label errors of a dataset version (default: the latest); idempotent on the
    version unless ``force``."""
    audits.label_issues_find(project_id=project_id, dataset_version_id=dataset_version_id, force=force)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=600, time_limit=660)
def refresh_audit(project_id: int, force: bool = False) -> None:
    """Compute and store a project's audit figures for requests to read; idempotent on the newest
    answer, label change and gold set."""
    audit.audit_refresh(project_id=project_id, force=force)
