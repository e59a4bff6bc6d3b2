"""When the loop acts by itself: cutting a version and training after enough new labels, on a
schedule (retrain.every_hours, checked by a periodic task), or on drift (the drift check calls
retrain_for_drift(project_id=...) when retrain.on_drift is set).

The check is level-triggered (enough labels since the last version's watermark?) and claimed with
a conditional UPDATE, so a burst of labels enqueues one cut and a lost message is renewed after
PATIENCE rather than forgotten. Whatever the trigger, one (version, config) has one run.
"""

import logging
from datetime import datetime, timedelta
from functools import partial

from django.db import transaction
from django.db.models import Q, Subquery, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from feedback.models import DatasetVersion, RetrainState, TrainingRun
from labeling.models import LabelChange, Project
from labeling.project_settings import ProjectSettings

logger = logging.getLogger(__name__)
PATIENCE = timedelta(minutes=10)


def new_labels_since_last_version(*, project_id: int, at_most: int) -> int:
    """Label changes after the latest version's watermark (or the last cut's, when that cut found
    nothing to change), counted up to ``at_most``: one bounded, indexed count (this runs after
    every answer)."""
    version_mark = Subquery(
        DatasetVersion.objects.filter(project_id=project_id).order_by("-version").values("last_change_id")[:1]
    )
    seen = Subquery(RetrainState.objects.filter(project_id=project_id).values("seen_change_id")[:1])
    watermark = Greatest(Coalesce(version_mark, Value(0)), Coalesce(seen, Value(0)))
    return LabelChange.objects.filter(project_id=project_id, id__gt=watermark).values("id")[:at_most].count()


def _claim(project_id: int) -> bool:
    now = timezone.now()
    RetrainState.objects.get_or_create(project_id=project_id)
    return bool(
        RetrainState.objects.filter(project_id=project_id)
        .filter(Q(cut_requested_at__isnull=True) | Q(cut_requested_at__lt=now - PATIENCE))
        .update(cut_requested_at=now)
    )


def cut_done(*, project_id: int, seen_change_id: int | None = None) -> None:
    """Release the claim; remember how far the cut looked so its no-op changes are not recounted."""
    changes: dict[str, object] = {"cut_requested_at": None}
    if seen_change_id is not None:
        changes["seen_change_id"] = seen_change_id
    RetrainState.objects.filter(project_id=project_id).update(**changes)


def on_labels_finalized(project_id: int) -> None:
    """After a commit that changed final labels: enqueue a cut-and-train when enough are new.

    Runs in the web process after commit; a broker failure is logged, not raised, because the
    labels are already safe and the next label re-checks (level-triggered).
    """
    from feedback import tasks

    try:
        stored = Project.objects.filter(pk=project_id).values_list("settings", flat=True).first()
        if stored is None:
            return
        threshold = ProjectSettings.of(stored).retrain["min_new_labels"]
        if new_labels_since_last_version(project_id=project_id, at_most=threshold) < threshold:
            return
        if _claim(project_id):
            try:
                tasks.dataset_cut_and_train.delay(project_id, "labels")
            except Exception:
                cut_done(project_id=project_id)
                raise
    except Exception:
        logger.exception("could not enqueue the retrain check of project %s", project_id)


def retrain_for_drift(*, project_id: int) -> None:
    """The drift check's hook (issue 3): cut a version and train it, trigger "drift", after the
    caller's commit. The caller decides that the drift is new (one drift trains once); this only
    enqueues. A version unchanged since the last cut finds its existing run (one run per version
    and config), so a drift with no new labels trains only when the config changed."""
    from feedback import tasks

    transaction.on_commit(partial(tasks.dataset_cut_and_train.delay, project_id, "drift"))


def score_later(*, project_id: int, first_id: int, last_id: int) -> None:
    """Score samples sent without probabilities, after commit (ingest calls this in its transaction)."""
    from feedback import tasks

    transaction.on_commit(partial(tasks.score_samples.delay, project_id, first_id, last_id))


def _due(project_id: int, every_hours: int, now: datetime) -> bool:
    """A schedule is due when no run started within ``every_hours`` and there is something to
    train: labels newer than the latest version, or a latest version with no run for the current
    training config (the family or its parameters changed)."""
    from feedback import training

    if TrainingRun.objects.filter(project_id=project_id, created_at__gte=now - timedelta(hours=every_hours)).exists():
        return False
    if new_labels_since_last_version(project_id=project_id, at_most=1) > 0:
        return True
    latest = DatasetVersion.objects.filter(project_id=project_id).order_by("-version").first()
    if latest is None or latest.size == 0:
        return False
    project = Project.objects.get(pk=project_id)
    wanted = training.config_hash(training.training_config(project))
    return not TrainingRun.objects.filter(dataset_version=latest, config_hash=wanted).exists()


def retrain_on_schedule(*, now: datetime | None = None) -> list[int]:
    """Enqueue a cut-and-train (trigger "schedule") for every project whose retrain.every_hours
    is due, claimed like the label trigger so that a beat tick and a burst of labels enqueue one
    cut. Called by the periodic task; returns the project ids enqueued."""
    from feedback import tasks

    moment = now or timezone.now()
    enqueued = []
    for project_id, stored in Project.objects.values_list("pk", "settings").iterator(chunk_size=500):
        every_hours = ProjectSettings.of(stored or {}).retrain.get("every_hours")
        if not every_hours or not _due(project_id, int(every_hours), moment):
            continue
        if _claim(project_id):
            try:
                tasks.dataset_cut_and_train.delay(project_id, "schedule")
            except Exception:
                cut_done(project_id=project_id)
                logger.exception("could not enqueue the scheduled retrain of project %s", project_id)
                continue
            enqueued.append(project_id)
    return enqueued
