"""Ingesting production samples: parse, check, store, score and queue in one pass per request.

The body is parsed with orjson (JSON array or NDJSON), checked row by row without an ORM, and the
valid rows are written in bulk in one transaction per request: samples and their pending tasks
(labeling's samples_add_bulk) and their scores. Invalid rows are reported by index and not stored;
known external_ids are duplicates and change nothing.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from feedback import policy, uncertainty
from feedback.models import ModelVersion, SampleScore
from feedback.rows import ValidRow, check_batch
from labeling.models import Project, Reason
from labeling.project_settings import ProjectSettings
from labeling.services.samples import NewSample, samples_add_bulk

MAX_ITEMS = 200_000


class BodyError(ValueError):
    """A body that is not a JSON array or NDJSON; the message names the line."""


def _ndjson_lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(body.split(b"\n"), start=1):
        if line.strip():
            yield number, line


def parse_body(body: bytes, ndjson: bool) -> list[Any]:
    """Items of a JSON array or NDJSON body; raises BodyError naming the first bad line."""
    if ndjson:
        items = []
        for number, line in _ndjson_lines(body):
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise BodyError(f"line {number}: invalid JSON ({exc.msg})") from exc
        return items
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        line_number = body[: exc.pos].count(b"\n") + 1
        raise BodyError(f"line {line_number}: invalid JSON ({exc.msg})") from exc
    if isinstance(parsed, dict) and isinstance(parsed.get("items"), list):
        parsed = parsed["items"]
    if not isinstance(parsed, list):
        raise BodyError("line 1: expected a JSON array of samples (or NDJSON with Content-Type application/x-ndjson)")
    return parsed


@dataclass(frozen=True)
class IngestResult:
    created: int
    duplicates: int
    rejected: list[dict[str, Any]]


def _priorities(rows: list[ValidRow], strategy: str, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Uncertainty from production's probabilities, and a mask of rows that carried them."""
    has = np.array([row.probabilities is not None for row in rows], dtype=bool)
    scores = np.zeros(len(rows))
    if has.any():
        probabilities = np.array([row.probabilities for row in rows if row.probabilities is not None])
        scores[has] = uncertainty.score(strategy, probabilities.reshape(-1, n_labels))
    return scores, has


def samples_ingest(*, project: Project, items: list[Any], actor: User | None) -> IngestResult:
    """Check ``items`` and store the valid ones with their scores and pending tasks.

    Rows with production probabilities are ranked by the project's uncertainty strategy; rows
    without are queued with reason ``random`` and, once the project has a model, scored by its
    newest one (a Celery task enqueued on commit). Retries once if a concurrent request inserted
    the same external_id first.
    """
    checked = check_batch(items, project.schema, project.labels)
    rows = checked.valid
    strategy = ProjectSettings.of(project.settings).selection["strategy"]
    scores, has_probabilities = _priorities(rows, strategy, len(project.labels))
    new_samples = [
        NewSample(
            external_id=row.external_id,
            data=row.data,
            observed_at=row.observed_at,
            label=row.label,
            priority=float(scores[i]) if has_probabilities[i] else 0.0,
            reason=Reason.UNCERTAINTY if has_probabilities[i] else Reason.RANDOM,
        )
        for i, row in enumerate(rows)
    ]
    for attempt in range(2):
        try:
            return _store(project, rows, new_samples, scores, has_probabilities, checked.rejected, actor)
        except IntegrityError:
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def _store(
    project: Project,
    rows: list[ValidRow],
    new_samples: list[NewSample],
    scores: np.ndarray,
    has_probabilities: np.ndarray,
    rejected: list[dict[str, Any]],
    actor: User | None,
) -> IngestResult:
    now = timezone.now()
    with transaction.atomic():
        added = samples_add_bulk(project=project, items=new_samples, actor=actor)
        score_rows = [
            SampleScore(
                sample_id=sample_id,
                project_id=project.pk,
                production_label=row.prediction_label,
                production_probabilities=row.probabilities,
                production_model_version=row.model_version,
                uncertainty=float(scores[i]) if has_probabilities[i] else None,
                scored_at=now if has_probabilities[i] else None,
            )
            for i, (row, sample_id) in enumerate(zip(rows, added.sample_ids, strict=True))
            if sample_id is not None
        ]
        SampleScore.objects.bulk_create(score_rows, batch_size=2000)
        unscored = [
            sample_id
            for i, sample_id in enumerate(added.sample_ids)
            if sample_id is not None and not has_probabilities[i] and rows[i].label is None
        ]
        if unscored and ModelVersion.objects.filter(project=project).exists():
            policy.score_later(project_id=project.pk, first_id=min(unscored), last_id=max(unscored))
    return IngestResult(created=added.n_created, duplicates=added.n_duplicates, rejected=rejected)
