"""Celery tasks of selection and drift (imported by feedback.tasks so that the worker finds them).

``drift_scan_soon`` is what ingest calls: after the ingest commits it enqueues one drift scan,
``DRIFT_DEBOUNCE_SECONDS`` later, and no other from the same process for that long, so that a burst
of ingest requests is measured by one scan. The scan itself is idempotent (windows already measured
are skipped), so a second scan from another process costs one look.
"""

import logging
import threading
import time
from functools import partial

from celery import shared_task
from django.conf import settings
from django.db import transaction

from feedback import drift_service

logger = logging.getLogger(__name__)
DRIFT_DEBOUNCE_SECONDS = float(getattr(settings, "DRIFT_DEBOUNCE_SECONDS", 5.0))
_next_scan: dict[int, float] = {}
_next_scan_lock = threading.Lock()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def drift_scan(project_id: int) -> None:
    drift_service.drift_scan(project_id=project_id)


def _enqueue_scan(project_id: int) -> None:
    try:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            drift_scan.delay(project_id)
            return
        now = time.monotonic()
        with _next_scan_lock:
            if _next_scan.get(project_id, 0.0) > now:
                return
            _next_scan[project_id] = now + DRIFT_DEBOUNCE_SECONDS
        drift_scan.apply_async((project_id,), countdown=DRIFT_DEBOUNCE_SECONDS)
    except Exception:
        # The samples are stored; the next ingest asks again.
        logger.exception("could not enqueue the drift scan of project %s", project_id)


def drift_scan_soon(*, project_id: int) -> None:
    """After the current transaction commits, enqueue a (debounced) drift scan of the project."""
    transaction.on_commit(partial(_enqueue_scan, project_id))
