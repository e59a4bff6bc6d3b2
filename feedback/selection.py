"""Scoring unlabeled samples with a model and re-ranking the queue by the project's strategy.

Work is done in vectorized batches: one read of BATCH samples, one predict_proba, one set-based
update per table. Never a query per sample.
"""

import logging
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from feedback import features, pipelines, registry, uncertainty
from feedback.models import ModelVersion, RetrainState, SampleScore
from labeling.bulk import update_from_values
from labeling.models import Project, Reason, Sample, SampleStatus
from labeling.project_settings import ProjectSettings
from labeling.queue import tasks_reprioritize

logger = logging.getLogger(__name__)
BATCH = 5000


def _score_batch(
    project: Project, model_version: ModelVersion, model: Any, batch: list[tuple[int, dict[str, Any]]], strategy: str
) -> None:
    ids = [sample_id for sample_id, _ in batch]
    X = features.matrix([data for _, data in batch], project.schema)
    probabilities = pipelines.probabilities_over(model, X, project.labels)
    scores = uncertainty.score(strategy, probabilities)
    best = probabilities.argmax(axis=1)
    now = timezone.now()
    labels = project.labels
    with transaction.atomic():
        tasks_reprioritize(
            project_id=project.pk,
            updates=[(sid, float(s), str(Reason.UNCERTAINTY)) for sid, s in zip(ids, scores, strict=True)],
        )
        update_from_values(
            table=SampleScore._meta.db_table,
            key="sample_id",
            columns=["uncertainty", "scored_by_id", "scored_at"],
            rows=[(sid, float(s), model_version.pk, now) for sid, s in zip(ids, scores, strict=True)],
        )
        Sample.objects.bulk_update(
            [
                Sample(pk=sid, suggestion={"label": labels[b], "confidence": round(float(probabilities[i, b]), 4)})
                for i, (sid, b) in enumerate(zip(ids, best, strict=True))
            ],
            ["suggestion"],
            batch_size=1000,
        )


def _score(project: Project, model_version: ModelVersion, samples: QuerySet[Sample]) -> int:
    model = registry.load_model(model_version=model_version)
    strategy = ProjectSettings.of(project.settings).selection["strategy"]
    done = 0
    last = 0
    while True:
        batch = list(samples.filter(pk__gt=last).order_by("pk").values_list("pk", "data")[:BATCH])
        if not batch:
            return done
        _score_batch(project, model_version, model, batch, strategy)
        done += len(batch)
        last = batch[-1][0]


def project_rescore(*, project_id: int, model_version_id: int) -> int:
    """Score every queued sample of the project with the model version and re-rank the queue.

    Skips the work when a newer model version exists (its own re-score follows) unless this one
    is the champion just promoted. Returns the number of samples scored.
    """
    project = Project.objects.filter(pk=project_id).first()
    model_version = ModelVersion.objects.filter(pk=model_version_id, project_id=project_id).first()
    if project is None or model_version is None:
        return 0
    newest = registry.newest(project_id=project_id)
    champion = registry.champion(project_id=project_id)
    if newest is not None and newest.pk != model_version.pk and (champion is None or champion.pk != model_version.pk):
        return 0
    queued = Sample.objects.filter(project=project, status=SampleStatus.QUEUED)
    RetrainState.objects.update_or_create(project_id=project_id, defaults={"scorer": model_version})
    scored = _score(project, model_version, queued)
    logger.info("project %s: re-scored %s samples with model v%s", project_id, scored, model_version.version)
    return scored


def samples_score(*, project_id: int, first_id: int, last_id: int) -> int:
    """Score the project's queued samples in [first_id, last_id] that nobody scored yet (sent
    without probabilities), with the model that last re-scored the queue. Idempotent."""
    project = Project.objects.filter(pk=project_id).first()
    state = RetrainState.objects.filter(project_id=project_id).select_related("scorer").first()
    model_version = state.scorer if state and state.scorer else registry.newest(project_id=project_id)
    if project is None or model_version is None:
        return 0
    pending = Sample.objects.filter(
        project=project,
        status=SampleStatus.QUEUED,
        pk__gte=first_id,
        pk__lte=last_id,
        score__scored_by__isnull=True,
        score__production_probabilities__isnull=True,
    )
    return _score(project, model_version, pending)


def score_matrix(project: Project, model: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    """Probabilities over the project's labels for raw data rows (used by predict)."""
    return pipelines.probabilities_over(model, features.matrix(rows, project.schema), project.labels)
