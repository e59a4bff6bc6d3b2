"""Drift of a project's production samples against its training set: windows, per-feature tests,
the domain classifier, per-sample drift scores, and what a drifted window sets off.

The statistics are ``feedback.drift`` (pure); this module loads rows and writes results.

- Reference: the rows of the latest dataset version with labels (or ``drift.reference_version``),
  at most ``REFERENCE_MAX`` of them (an even subsample of a larger set).
- Production: the project's samples but the seed rows sent with a known label (method ``import``),
  ordered by ``observed_at`` (``created_at`` when production sent none), cut into windows of
  ``drift.window`` samples (or ``?window=N``), aligned on the first sample, or into spans of
  ``drift.window_seconds`` from the first sample.
- Features are compared in the space of the project's scorer model (its preprocessor), or of a
  preprocessor fitted on the reference when there is no model yet.

Work is bounded: a request computes at most ``MAX_LIMIT`` windows (fewer of a very large size),
reading the ids and times of their samples (a top-N sort) and the data of at most ``REQUEST_ROWS``
of them (an even subsample of each window beyond that), each domain classifier on at most
``REQUEST_DOMAIN_ROWS`` rows a side. The background scan (``drift_scan``, after ingest) measures
the newest complete windows not measured yet, writes each of their samples' drift score, queues
samples from a drifted region (a re-rank gives them the ``drift`` budget), and triggers retraining
once per drift when ``retrain.on_drift`` is set (``feedback.policy.retrain_for_drift``).
"""

import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import F, Max, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from feedback import datasets, drift, features, pipelines, policy, registry
from feedback.models import DatasetVersion, RetrainState, SampleScore
from labeling.bulk import update_from_arrays
from labeling.models import LabelMethod, Project, Sample
from labeling.project_settings import ProjectSettings

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 12
MAX_LIMIT = 100
REFERENCE_MAX = 20_000
REQUEST_DOMAIN_ROWS = 1000
# A request reads at most this many samples' data (an even subsample of each window beyond it;
# ``n`` still counts the whole window), and the ids and times of at most REQUEST_IDS samples (fewer
# windows of a very large size).
REQUEST_ROWS = 200_000
REQUEST_IDS = 2_000_000
REQUEST_FOLDS = 3
SCAN_WINDOWS = 3
ID_CHUNK = 5000
_LOCK_NAMESPACE = 0xD21F7


class DriftError(ValueError):
    """A drift request that cannot be answered as asked (the message says why)."""


@dataclass
class Reference:
    version: DatasetVersion
    columns: dict[str, NDArray[Any]]
    transformed: Any
    transformer: Any
    n: int


@dataclass
class Cut:
    """Production windows: ``windows`` index ``sample_ids``/``observed``/``rows``."""

    sample_ids: NDArray[np.int64]
    observed: list[datetime]
    rows: list[Any]  # the samples' data dicts by position (None where not read)
    windows: list[drift.Window]
    first_index: int  # the index of the first window returned, counting from the first sample
    complete: list[bool] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # samples per window (its indices may be a subsample)


def reference_version(project: Project) -> DatasetVersion | None:
    """The pinned ``drift.reference_version`` (None when it does not exist), else the latest version
    that has rows."""
    pinned = ProjectSettings.of(project.settings).drift.get("reference_version")
    versions = DatasetVersion.objects.filter(project=project, pruned_at__isnull=True)
    if pinned is not None:
        return versions.filter(version=pinned).first()
    return versions.filter(size__gt=0).order_by("-version").first()


def _transformer(project: Project, reference_matrix: NDArray[Any]) -> Any:
    from feedback.selection import scorer_of

    model_version = scorer_of(project_id=project.pk)
    if model_version is not None:
        return registry.load_model(model_version=model_version).named_steps["features"]
    return pipelines.preprocessor(project.schema, reference_matrix).fit(reference_matrix)


def reference_load(project: Project, version: DatasetVersion) -> Reference | None:
    """The reference's columns and transformed features (None when the version has no rows)."""
    ids = list(datasets.members_at(version=version).order_by("sample_id").values_list("sample_id", flat=True))
    if not ids:
        return None
    if len(ids) > REFERENCE_MAX:
        step = len(ids) / REFERENCE_MAX
        ids = [ids[int(i * step)] for i in range(REFERENCE_MAX)]
    rows = _data_of(ids)
    X = features.matrix(rows, project.schema)
    transformer = _transformer(project, X)
    return Reference(
        version=version,
        columns=drift.columns_of(project.schema, X),
        transformed=transformer.transform(X),
        transformer=transformer,
        n=len(rows),
    )


def _data_of(ids: Sequence[int]) -> list[dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), ID_CHUNK):
        found.update(Sample.objects.filter(pk__in=ids[start : start + ID_CHUNK]).values_list("pk", "data"))
    return [found[i] for i in ids]


def _production(project: Project) -> Any:
    return (
        Sample.objects.filter(project=project)
        .exclude(final_label__method=LabelMethod.IMPORT)
        .annotate(moment=Coalesce(F("observed_at"), F("created_at")))
    )


def _thin(windows: list[drift.Window], total: int, max_rows: int) -> list[drift.Window]:
    """Each window's indices evenly subsampled so that all of them hold at most about ``max_rows``."""
    if total <= max_rows:
        return windows
    out = []
    for w in windows:
        keep = max(1, math.ceil(w.n * max_rows / total))
        picked = np.unique(np.linspace(0, w.n - 1, keep).round().astype(np.intp))
        out.append(drift.Window(indices=w.indices[picked], start=w.start, end=w.end))
    return out


def production_cut(
    project: Project,
    *,
    size: int | None,
    seconds: int | None,
    limit: int,
    load_rows: bool = True,
    max_rows: int | None = None,
) -> Cut:
    """The newest ``limit`` windows of production samples (by count ``size``, or by span ``seconds``);
    without ``load_rows`` their data is left unread (``rows`` empty: see ``cut_rows_load``); with
    ``max_rows`` only an even subsample of each window, about ``max_rows`` in all, is read (``rows``
    holds None elsewhere; ``counts`` the windows' full sizes)."""
    queryset = _production(project)
    if seconds is not None:
        bounds = queryset.aggregate(first=Min("moment"), last=Max("moment"))
        if bounds["first"] is None:
            return Cut(np.empty(0, dtype=np.int64), [], [], [], 0)
        span = timedelta(seconds=seconds)
        last_bin = int((bounds["last"] - bounds["first"]) / span)
        first_bin = max(0, last_bin - limit + 1)
        lower = bounds["first"] + first_bin * span
        picked = list(queryset.filter(moment__gte=lower).order_by("moment", "pk").values_list("pk", "moment"))
        moments = [m for _, m in picked]
        windows = drift.windows_by_span(moments, span, origin=bounds["first"])
        complete = [True] * len(windows)
        if windows and int((windows[-1].start - bounds["first"]) / span) == last_bin:
            complete[-1] = False  # the newest span may still be filling
        first_index = first_bin
    else:
        assert size is not None
        total = queryset.count()
        n_windows = math.ceil(total / size)
        first_index = max(0, n_windows - limit)
        # The newest rows only, newest first (a top-N sort, not a sort of every sample), then in time order.
        wanted = total - first_index * size
        picked = list(queryset.order_by("-moment", "-pk").values_list("pk", "moment")[:wanted])[::-1]
        moments = [m for _, m in picked]
        windows = [
            drift.Window(indices=np.arange(i, min(i + size, len(picked)), dtype=np.intp), start=None, end=None)
            for i in range(0, len(picked), size)
        ]
        windows = [
            drift.Window(indices=w.indices, start=moments[w.indices[0]], end=moments[w.indices[-1]]) for w in windows
        ]
        complete = [w.n == size for w in windows]
    ids = [pk for pk, _ in picked]
    counts = [w.n for w in windows]
    rows: list[Any] = []
    if max_rows is not None:
        windows = _thin(windows, len(ids), max_rows)
    if load_rows:
        kept = np.concatenate([w.indices for w in windows]) if windows else np.empty(0, dtype=np.intp)
        rows = [None] * len(ids)
        for position, data in zip(kept.tolist(), _data_of([ids[i] for i in kept.tolist()]), strict=True):
            rows[position] = data
    return Cut(
        sample_ids=np.array(ids, dtype=np.int64),
        observed=moments,
        rows=rows,
        windows=windows,
        first_index=first_index,
        complete=complete,
        counts=counts,
    )


def cut_rows_load(cut: Cut) -> None:
    """Read the data of a cut made without it."""
    if len(cut.rows) != len(cut.sample_ids) or any(row is None for row in cut.rows):
        cut.rows = _data_of(cut.sample_ids.tolist())


def _window_result(
    project: Project,
    reference: Reference,
    cut: Cut,
    window: drift.Window,
    *,
    domain: bool,
    domain_rows: int,
    folds: int,
    n: int,
) -> drift.WindowDrift:
    """The window's drift; ``n`` its full count (``window`` may hold a subsample of it)."""
    rows = [cut.rows[i] for i in window.indices]
    X = features.matrix(rows, project.schema)
    columns = drift.columns_of(project.schema, X)
    kinds = {name: kind for name, kind in project.schema.items() if kind in ("numeric", "categorical", "text")}
    result = drift.window_drift(kinds, reference.columns, columns, start=window.start, end=window.end)
    result = dataclasses.replace(result, n=n)
    if not domain:
        return result
    verdict = drift.domain_classifier(
        reference.transformed, reference.transformer.transform(X), max_rows=domain_rows, folds=folds
    )
    drifted = any(f.drifted for f in result.features.values()) or verdict.drifted
    return drift.WindowDrift(
        start=result.start,
        end=result.end,
        n=result.n,
        drifted=drifted,
        score=verdict.auroc,
        features=result.features,
        domain=verdict,
    )


def _as_dict(index: int, result: drift.WindowDrift, complete: bool) -> dict[str, Any]:
    out = result.as_dict()
    out["index"] = index
    out["complete"] = complete
    out["score_kind"] = "domain_auroc" if result.domain is not None else "max_effect"
    if result.domain is not None:
        out["domain"] = {
            "auroc": result.domain.auroc,
            "ci_low": result.domain.ci_low,
            "ci_high": result.domain.ci_high,
            "drifted": result.domain.drifted,
        }
    return out


def project_drift(
    *,
    project: Project,
    window: int | None = None,
    seconds: int | None = None,
    limit: int = DEFAULT_LIMIT,
    domain: bool = True,
) -> dict[str, Any]:
    """``GET drift``'s answer: the reference and the newest ``limit`` windows, oldest first.

    ``window`` (samples) or ``seconds`` (a span) choose the cut; neither: the project's
    ``drift.window_seconds`` when set, else ``drift.window``. Read-only; bounded work (see the
    module docstring). Raises DriftError for a pinned reference version that does not exist.
    """
    chosen = ProjectSettings.of(project.settings).drift
    if window is None and seconds is None:
        seconds = chosen.get("window_seconds")
        window = None if seconds else int(chosen["window"])
    limit = max(1, min(limit, MAX_LIMIT))
    version = reference_version(project)
    pinned = chosen.get("reference_version")
    if version is None and pinned is not None:
        raise DriftError(f"drift.reference_version {pinned} does not exist (or was pruned)")
    cut_info: dict[str, Any] = {"samples": window} if seconds is None else {"seconds": seconds}
    body: dict[str, Any] = {
        "reference": {"dataset_version": version.version if version else None, "n": 0},
        "window": cut_info,
        "windows": [],
    }
    if version is None:
        return body
    with threadpool_limits(1):
        reference = reference_load(project, version)
        if reference is None:
            return body
        body["reference"]["n"] = reference.n
        if window is not None:
            limit = min(limit, max(1, REQUEST_IDS // window))
        cut = production_cut(project, size=window, seconds=seconds, limit=limit, max_rows=REQUEST_ROWS)
        for offset, (piece, complete, n) in enumerate(zip(cut.windows, cut.complete, cut.counts, strict=True)):
            result = _window_result(
                project,
                reference,
                cut,
                piece,
                domain=domain,
                domain_rows=REQUEST_DOMAIN_ROWS,
                folds=REQUEST_FOLDS,
                n=n,
            )
            body["windows"].append(_as_dict(cut.first_index + offset, result, complete))
    return body


# ---------------------------------------------------------------- the background scan


@dataclass(frozen=True)
class ScanResult:
    scanned: int  # windows measured now
    drifted: int  # of them, drifted
    scored: int  # samples that got a drift score
    retrain: bool  # a retraining was enqueued


@contextmanager
def _try_lock(project_id: int) -> Iterator[bool]:
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, project_id])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, project_id])


def _claim_retrain(project_id: int, version: DatasetVersion) -> bool:
    """Once per drift: the first drifted window against a reference claims the retrain (a version
    cut for drift does not claim it again)."""
    if version.trigger == "drift":
        return False
    RetrainState.objects.get_or_create(project_id=project_id)
    return bool(
        RetrainState.objects.filter(project_id=project_id)
        .filter(Q(drift_triggered_at__isnull=True) | Q(drift_triggered_at__lt=version.created_at))
        .update(drift_triggered_at=timezone.now())
    )


def drift_scan(*, project_id: int) -> ScanResult:
    """Measure the newest complete windows (at most SCAN_WINDOWS) whose samples have no drift score
    yet, with the full domain classifier; give each of their samples its drift score (the domain
    classifier's out-of-fold probability in a drifted window, 0 in a stationary one); re-rank the
    queue when a window drifted (its samples fill the drift budget); and, with retrain.on_drift,
    enqueue one cut-and-train (trigger "drift") per drift, after commit.

    Idempotent (measured windows are skipped). One scan per project at a time (an advisory lock on
    PostgreSQL; a scan that finds it taken returns at once).
    """
    from feedback import selection

    nothing = ScanResult(scanned=0, drifted=0, scored=0, retrain=False)
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return nothing
    chosen = ProjectSettings.of(project.settings)
    seconds = chosen.drift.get("window_seconds")
    size = None if seconds else int(chosen.drift["window"])
    with _try_lock(project_id) as got:
        if not got:
            return nothing
        version = reference_version(project)
        if version is None:
            return nothing
        # Most scans find nothing new: the samples' data is read only once there is a window to measure.
        cut = production_cut(project, size=size, seconds=seconds, limit=SCAN_WINDOWS + 1, load_rows=False)
        newest = [piece for piece, complete in zip(cut.windows, cut.complete, strict=True) if complete]
        todo = [
            piece
            for piece in newest[-SCAN_WINDOWS:]
            if SampleScore.objects.filter(
                sample_id__in=cut.sample_ids[piece.indices][:ID_CHUNK].tolist(), drift__isnull=True
            ).exists()
        ]
        if not todo:
            return nothing
        cut_rows_load(cut)
        with threadpool_limits(1):
            reference = reference_load(project, version)
            if reference is None:
                return nothing
            results = [
                _window_result(project, reference, cut, piece, domain=True, domain_rows=5000, folds=5, n=piece.n)
                for piece in todo
            ]
        drifted = 0
        scored = 0
        with transaction.atomic():
            for piece, result in zip(todo, results, strict=True):
                assert result.domain is not None
                scores = result.domain.sample_scores if result.drifted else np.zeros(piece.n)
                drifted += int(result.drifted)
                scored += update_from_arrays(
                    table=SampleScore._meta.db_table,
                    key="sample_id",
                    columns={
                        "sample_id": cut.sample_ids[piece.indices],
                        "drift": np.asarray(scores, dtype=np.float64),
                    },
                )
            retrain = False
            if results[-1].drifted and chosen.retrain["on_drift"] and _claim_retrain(project_id, version):
                retrain = True
                policy.retrain_for_drift(project_id=project_id)
        logger.info(
            "project %s: drift measured on %s window(s), %s drifted, %s samples scored%s",
            project_id,
            len(todo),
            drifted,
            scored,
            ", retraining" if retrain else "",
        )
    if drifted:
        selection.project_rerank(project_id=project_id)
    return ScanResult(scanned=len(todo), drifted=drifted, scored=scored, retrain=retrain)


def drift_over_time(*, project: Project, limit: int = 50) -> dict[str, Any]:
    """Per-feature drift of the newest ``limit`` windows (no domain classifier: the page's chart)."""
    return project_drift(project=project, limit=limit, domain=False)
