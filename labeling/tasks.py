"""Celery tasks of the labeling side (found by the worker's autodiscovery). Thin wrappers: ids in,
a service call, early return when there is nothing (left) to do."""

from celery import shared_task

from labeling.services import consensus


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=600, time_limit=660)
def consensus_reestimate(project_id: int) -> None:
    """Re-estimate Dawid-Skene over the project and update the final labels that change
    (enqueued, debounced, after the answers that ask for it commit; idempotent)."""
    consensus.consensus_reestimate(project_id=project_id)
