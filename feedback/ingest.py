"""Ingesting production samples: parse, check, store, score and queue in one pass per request.

The body is parsed with orjson (JSON array or NDJSON), checked row by row without an ORM, and the
valid rows are written in bulk in one transaction per request: samples and their pending tasks
(labeling's samples_add_bulk) and their scores. Invalid rows are reported by index and not stored;
known external_ids are duplicates and change nothing. On PostgreSQL every table is written with
set-based statements fed by one JSON document each (see labeling.services.samples); elsewhere with
bulk_create. bench/ingest.py measures the endpoint against a raw COPY.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from feedback import policy, selection_tasks, uncertainty
from feedback.models import ModelVersion, SampleScore
from feedback.rows import ValidRow, check_batch
from labeling.models import Project, Reason
from labeling.project_settings import ProjectSettings
from labeling.services.labels import execute_bound
from labeling.services.samples import NewSample, samples_add_bulk

MAX_ITEMS = 200_000
SCORES_PER_STATEMENT = 5000  # bounds the JSON document one statement carries
# scored_at is set exactly when production's probabilities gave an uncertainty.
_SCORES_INSERT = f"""
INSERT INTO {SampleScore._meta.db_table} (
    sample_id, project_id, production_label, production_probabilities, production_model_version, uncertainty, scored_at
)
SELECT (r->>0)::bigint, %(project)s, r->>1, NULLIF(r->2, 'null'), r->>3, (r->>4)::float8,
    CASE WHEN r->>4 IS NULL THEN NULL ELSE %(now)s::timestamptz END
FROM jsonb_array_elements(%(rows)s::jsonb) AS r
"""


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
    newest one (a Celery task enqueued on commit). A concurrent request storing the same
    external_id makes this one wait and count it as a duplicate (PostgreSQL); elsewhere its
    IntegrityError is retried once, and the retry sees the duplicate.
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
        stored = [(i, sample_id) for i, sample_id in enumerate(added.sample_ids) if sample_id is not None]
        if connection.vendor == "postgresql":
            _scores_postgresql(project, rows, stored, scores, has_probabilities, now)
        else:
            _scores_create(project, rows, stored, scores, has_probabilities, now)
        unscored = [sample_id for i, sample_id in stored if not has_probabilities[i] and rows[i].label is None]
        if unscored and ModelVersion.objects.filter(project=project).exists():
            policy.score_later(project_id=project.pk, first_id=min(unscored), last_id=max(unscored))
        if any(rows[i].label is None for i, _ in stored):
            selection_tasks.drift_scan_soon(project_id=project.pk)
    return IngestResult(created=added.n_created, duplicates=added.n_duplicates, rejected=rejected)


def _scores_postgresql(
    project: Project,
    rows: list[ValidRow],
    stored: list[tuple[int, int]],
    scores: np.ndarray,
    has_probabilities: np.ndarray,
    now: datetime,
) -> None:
    """SampleScore rows from one JSON document of positional arrays, sent as a bound parameter:
    one orjson call instead of a COPY row formatted per sample in Python (which cost more here),
    and nothing can conflict, since their samples were just inserted."""
    uncertainties = scores.tolist()
    flags = has_probabilities.tolist()
    for start in range(0, len(stored), SCORES_PER_STATEMENT):
        document = orjson.dumps(
            [
                (
                    sample_id,
                    rows[i].prediction_label,
                    rows[i].probabilities,
                    rows[i].model_version,
                    uncertainties[i] if flags[i] else None,
                )
                for i, sample_id in stored[start : start + SCORES_PER_STATEMENT]
            ]
        )
        execute_bound(_SCORES_INSERT, {"rows": document.decode(), "project": project.pk, "now": now})


def _scores_create(
    project: Project,
    rows: list[ValidRow],
    stored: list[tuple[int, int]],
    scores: np.ndarray,
    has_probabilities: np.ndarray,
    now: datetime,
) -> None:
    SampleScore.objects.bulk_create(
        [
            SampleScore(
                sample_id=sample_id,
                project_id=project.pk,
                production_label=rows[i].prediction_label,
                production_probabilities=rows[i].probabilities,
                production_model_version=rows[i].model_version,
                uncertainty=float(scores[i]) if has_probabilities[i] else None,
                scored_at=now if has_probabilities[i] else None,
            )
            for i, sample_id in stored
        ],
        batch_size=2000,
    )
