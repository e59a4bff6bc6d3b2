"""Scoring the unlabeled pool with a model and re-ranking the queue by the project's strategy and budgets.

One pass over the pool, vectorized: one read of every unlabeled sample (on PostgreSQL three ``COPY``
statements: the samples' fields, their tasks' priority and reason, their drift scores; elsewhere one
ORM query), one feature matrix, one ``transform`` and ``predict_proba``, one ranking
(``feedback.ranking``), and one set-based UPDATE per table (``labeling.bulk.update_from_arrays``:
a binary COPY into a temporary table and one ``UPDATE ... FROM`` on PostgreSQL). Never a query per
sample.

What is written per re-score, and why not everything: updating a million task rows costs
PostgreSQL about 30 s here (four indexes per row, and the priority is in one of them), so a
re-score writes what changes the queue's order:

- the *head* (the next ``ranking.HEAD_BATCHES`` batches, budgets interleaved): always, exactly;
- rows of the previous head that left it: always (their priority above 1 would keep them on top);
- tail rows whose stored priority is off by more than ``TAIL_TOLERANCE``, most useful first, at most
  ``TAIL_WRITES`` per re-score (the tail converges over successive re-scores; it is only reached
  when annotators get through the whole head before the next model);
- tasks that the floor adds or removes.

Each written row gets its score (SampleScore: uncertainty, scored_by, scored_at) and its suggestion
(the model's label and confidence). bench/rescore.py measures a million samples.
"""

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from feedback import features, pipelines, ranking, registry, uncertainty
from feedback.models import ModelVersion, RetrainState, SampleScore
from labeling.bulk import binary_copy_columns, copy_out, update_from_arrays
from labeling.models import Project, Reason, Sample, SampleStatus, Task, TaskKind, TaskStatus
from labeling.project_settings import ProjectSettings

logger = logging.getLogger(__name__)

TAIL_TOLERANCE = 0.01
# Writing a row costs about 40 us (bench/rescore.py); 20,000 of them is about a second a re-score,
# and more tail rows than that are rarely handed out before the next model re-scores again.
TAIL_WRITES = 20_000
# Manual pushes sort above the budgeted head and below reviews (labeling.services.review: 2.0).
MANUAL_PRIORITY = 1.95
MANUAL_STEP = 1e-6
MANUAL_MAX = 10_000
# Reason codes: ranking.REASONS, then manual, then anything else (gold, review: never re-ranked).
MANUAL, OTHER, NO_TASK = 4, 5, -1
CODES = (*ranking.REASONS, str(Reason.MANUAL))
_REASON_OF_CODE = "CASE {v} " + " ".join(f"WHEN {i} THEN '{name}'" for i, name in enumerate(CODES)) + " END"
_CODE_OF_REASON = (
    "CASE {t} " + " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(CODES)) + f" ELSE {OTHER} END"
)
_LOCK_NAMESPACE = 0x5E1EC7  # pg advisory lock keys: (namespace, project id)


@dataclass
class Pool:
    """The project's unlabeled samples: those with a pending label task, and those the floor left out."""

    sample_ids: NDArray[np.int64]
    has_task: NDArray[np.bool_]
    priority: NDArray[np.float64]  # the stored task priority (NaN without a task)
    reason: NDArray[np.int16]  # the stored reason code (NO_TASK without a task)
    drift: NDArray[np.float64]  # per-sample drift score (NaN when not measured)
    stored_uncertainty: NDArray[np.float64]  # SampleScore.uncertainty (NaN when none)
    matrix: NDArray[Any]  # the samples' feature matrix (feedback.features.matrix), one row per sample

    def __len__(self) -> int:
        return len(self.sample_ids)


@dataclass(frozen=True)
class RerankResult:
    pool: int
    head: int
    written: int
    queued: int  # tasks created (the floor let them in, or they had none)
    dropped: int  # tasks cancelled by the floor


# ---------------------------------------------------------------- reading the pool

# The pool is read as three COPY statements and joined here in numpy: the samples with each schema
# field taken out of the JSON by PostgreSQL (numbers as float8, which ingest guarantees they are;
# strings as text), as CSV parsed by pyarrow (no JSON and no row is parsed in Python); their pending
# label tasks and the drift (and, without a model, uncertainty) scores, as binary COPY of
# fixed-width columns (one numpy frombuffer each). Joining the three tables in PostgreSQL, or
# fetching rows through the cursor, cost more (measured for bench/rescore.py).
_NUMBER = "COALESCE((s.data ->> {key})::float8, 'NaN')"
_STRING = "s.data ->> {key}"


def _range(column: str, first_id: int | None, last_id: int | None) -> str:
    out = ""
    if first_id is not None:
        out += f" AND {column} >= {int(first_id)}"
    if last_id is not None:
        out += f" AND {column} <= {int(last_id)}"
    return out


def _pool_statements(project: Project, first_id: int | None, last_id: int | None, all_scores: bool) -> list[str]:
    """The queries of the samples, the tasks and the scores. Values are inlined (COPY takes no
    parameters): the project id as an int, field names quoted as SQL literals by psycopg."""
    from psycopg import sql

    raw = connection.connection
    project_id = int(project.pk)
    fields = ""
    for name, kind in features.ordered(dict(project.schema)):
        key = sql.Literal(name).as_string(raw)
        fields += ", " + (_NUMBER if kind == "numeric" else _STRING).format(key=key)
    unlabeled = f"{int(SampleStatus.UNLABELED)}, {int(SampleStatus.QUEUED)}"
    samples = (
        f"SELECT s.id, s.status{fields} FROM {Sample._meta.db_table} s WHERE s.project_id = {project_id}"
        f" AND s.status IN ({unlabeled}){_range('s.id', first_id, last_id)}"
    )
    tasks = (
        f"SELECT t.sample_id::int8, COALESCE(t.priority, 'NaN')::float8,"
        f" ({_CODE_OF_REASON.format(t='t.reason')})::int2 FROM {Task._meta.db_table} t"
        f" WHERE t.project_id = {project_id} AND t.status = {int(TaskStatus.PENDING)}"
        f" AND t.kind = '{TaskKind.LABEL.value}'{_range('t.sample_id', first_id, last_id)}"
    )
    wanted = "" if all_scores else " AND sc.drift IS NOT NULL"
    scores = (
        f"SELECT sc.sample_id::int8, COALESCE(sc.drift, 'NaN')::float8, COALESCE(sc.uncertainty, 'NaN')::float8"
        f" FROM {SampleScore._meta.db_table} sc WHERE sc.project_id = {project_id}{wanted}"
        f"{_range('sc.sample_id', first_id, last_id)}"
    )
    return [samples, tasks, scores]


def _matrix_of_columns(project: Project, columns: list[NDArray[Any]]) -> NDArray[Any]:
    """features.matrix's layout from per-field columns (numbers NaN when missing, strings None)."""
    cols = features.layout(dict(project.schema))
    n = len(columns[0]) if columns else 0
    out = np.empty((n, cols.width), dtype=object)
    position = 0
    for (_, kind), values in zip(features.ordered(dict(project.schema)), columns, strict=True):
        if kind == "image":
            width = features.IMAGE_SIDE * features.IMAGE_SIDE
            block = np.vstack([features.image_pixels(v) for v in values]) if n else np.empty((0, width))
            out[:, position : position + width] = block
            position += width
            continue
        if kind == "numeric":
            out[:, position] = np.asarray(values, dtype=np.float64)
        else:
            column = np.asarray(values, dtype=object).copy()
            missing = np.frompyfunc(lambda v: v is None, 1, 1)(column).astype(bool)
            column[missing] = "\x00missing" if kind == "categorical" else ""
            out[:, position] = column
        position += 1
    return out


def _samples_columns(project: Project, statement: str) -> list[NDArray[Any]]:
    """The samples statement's columns (id, status, then one per field) through COPY ... CSV and
    pyarrow's CSV reader: NULL strings (unquoted empty fields) become None, quoted ones stay ""."""
    import pyarrow as pa
    from pyarrow import csv

    payload = copy_out(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)")
    kinds = [kind for _, kind in features.ordered(dict(project.schema))]
    types = [pa.int64(), pa.int16()] + [pa.float64() if k == "numeric" else pa.string() for k in kinds]
    names = [f"c{i}" for i in range(len(types))]
    if not payload:
        return [np.empty(0, dtype=t.to_pandas_dtype()) for t in types]
    table = csv.read_csv(
        pa.py_buffer(payload),
        read_options=csv.ReadOptions(column_names=names),
        parse_options=csv.ParseOptions(newlines_in_values=True),
        convert_options=csv.ConvertOptions(
            column_types=dict(zip(names, types, strict=True)),
            # Only COPY's NULL (an unquoted empty field) is missing: not "NULL", "NA", ... as by default.
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return [table.column(i).to_numpy(zero_copy_only=False) for i in range(len(types))]


def _read_pool_postgresql(project: Project, first_id: int | None, last_id: int | None, all_scores: bool) -> Pool:
    """The pool (see _pool_statements), in id order."""
    connection.ensure_connection()
    samples_sql, tasks_sql, scores_sql = _pool_statements(project, first_id, last_id, all_scores)
    columns = _samples_columns(project, samples_sql)
    task_ids, task_priority, task_reason = binary_copy_columns(
        copy_out(f"COPY ({tasks_sql}) TO STDOUT WITH (FORMAT binary)"), ["int64", "float64", "int16"]
    )
    score_ids, score_drift, score_uncertainty = binary_copy_columns(
        copy_out(f"COPY ({scores_sql}) TO STDOUT WITH (FORMAT binary)"), ["int64", "float64", "float64"]
    )
    if not len(columns[0]):
        return _empty_pool(project)
    ids = columns[0].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    status = columns[1].astype(np.int16)[order]
    n = len(ids)

    def place(keys: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
        positions = np.minimum(np.searchsorted(ids, keys), n - 1)
        return positions, ids[positions] == keys

    priority = np.full(n, np.nan)
    reason = np.full(n, NO_TASK, dtype=np.int16)
    at, found = place(task_ids)
    priority[at[found]] = task_priority[found]
    reason[at[found]] = task_reason[found]
    # Queued for something else only (a review or gold task): not the re-rank's to touch.
    reason[(reason == NO_TASK) & (status == SampleStatus.QUEUED)] = OTHER
    drift = np.full(n, np.nan)
    stored = np.full(n, np.nan)
    at, found = place(score_ids)
    drift[at[found]] = score_drift[found]
    stored[at[found]] = score_uncertainty[found]
    field_columns = [column[order] for column in columns[2:]]
    return Pool(
        sample_ids=ids,
        has_task=reason != NO_TASK,
        priority=priority,
        reason=reason,
        drift=drift,
        stored_uncertainty=stored,
        matrix=_matrix_of_columns(project, field_columns),
    )


def _read_pool_portable(project: Project, first_id: int | None, last_id: int | None) -> Pool:
    project_id = project.pk
    pending = Task.objects.filter(sample=OuterRef("pk"), status=TaskStatus.PENDING, kind=TaskKind.LABEL)
    queryset = (
        Sample.objects.filter(project_id=project_id)
        .annotate(
            task_priority=Subquery(pending.values("priority")[:1]),
            task_reason=Subquery(pending.values("reason")[:1]),
        )
        .filter(Q(status=SampleStatus.UNLABELED) | Exists(pending))
    )
    if first_id is not None:
        queryset = queryset.filter(pk__gte=first_id)
    if last_id is not None:
        queryset = queryset.filter(pk__lte=last_id)
    rows = list(
        queryset.order_by("pk").values_list(
            "pk", "task_priority", "task_reason", "score__drift", "score__uncertainty", "data"
        )
    )
    if not rows:
        return _empty_pool(project)
    code = {name: i for i, name in enumerate(CODES)}
    reason = np.array([NO_TASK if r[2] is None else code.get(r[2], OTHER) for r in rows], dtype=np.int16)

    def floats(i: int) -> NDArray[np.float64]:
        return np.array([math.nan if r[i] is None else r[i] for r in rows], dtype=np.float64)

    return Pool(
        sample_ids=np.array([r[0] for r in rows], dtype=np.int64),
        has_task=reason != NO_TASK,
        priority=floats(1),
        reason=reason,
        drift=floats(3),
        stored_uncertainty=floats(4),
        matrix=features.matrix([r[5] for r in rows], project.schema),
    )


def _empty_pool(project: Project) -> Pool:
    return Pool(
        sample_ids=np.empty(0, dtype=np.int64),
        has_task=np.empty(0, dtype=bool),
        priority=np.empty(0),
        reason=np.empty(0, dtype=np.int16),
        drift=np.empty(0),
        stored_uncertainty=np.empty(0),
        matrix=features.matrix([], project.schema),
    )


def pool_read(
    *, project: Project, first_id: int | None = None, last_id: int | None = None, all_scores: bool = True
) -> Pool:
    """Every unlabeled sample of the project (optionally in an id range), in id order. Without
    ``all_scores`` only the drift scores that exist are read (stored_uncertainty stays NaN where
    no drift was measured): what a re-score by a model needs."""
    if connection.vendor == "postgresql":
        return _read_pool_postgresql(project, first_id, last_id, all_scores)
    return _read_pool_portable(project, first_id, last_id)


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scored:
    uncertainty: NDArray[np.float64]
    features: Any  # the pool in the model's feature space (None when there is no model or data)
    best: NDArray[np.intp] | None  # the model's label index per row
    confidence: NDArray[np.float64] | None


def score_pool(project: Project, model: Any, X: NDArray[Any], strategy: str, seed: int = 0) -> Scored:
    """The strategy's uncertainty of each row of the feature matrix ``X`` under ``model``, the rows in
    the model's feature space (the pipeline's preprocessor), and the model's suggestion. One
    transform, one predict_proba."""
    transformed = model.named_steps["features"].transform(X)
    fitted = model.named_steps["classifier"].predict_proba(transformed)
    probabilities = np.zeros((len(X), len(project.labels)))
    position = {label: i for i, label in enumerate(project.labels)}
    for column, cls in enumerate(model.classes_):
        probabilities[:, position[str(cls)]] = fitted[:, column]
    scores = uncertainty.score(strategy, probabilities, rng=np.random.default_rng(seed))
    best = probabilities.argmax(axis=1)
    return Scored(
        uncertainty=scores,
        features=transformed,
        best=best,
        confidence=probabilities[np.arange(len(X)), best],
    )


def _features_without_model(project: Project, X: NDArray[Any], seed: int) -> Any:
    """A preprocessor fitted on (a sample of) the pool itself, for diversity before any model exists."""
    if not len(X):
        return None
    rng = np.random.default_rng(seed)
    fit_on = X[np.sort(rng.choice(len(X), min(len(X), 20_000), replace=False))]
    try:
        return pipelines.preprocessor(project.schema, fit_on).fit(fit_on).transform(X)
    except ValueError:
        return None


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class Plan:
    """What a re-rank writes: rows (pool indices) whose task gets a new priority and reason, rows
    whose task is cancelled by the floor, rows that get a task."""

    update: NDArray[np.intp]
    cancel: NDArray[np.intp]
    create: NDArray[np.intp]
    priorities: NDArray[np.float64]  # per pool row
    reasons: NDArray[np.int16]  # per pool row


def plan_writes(
    pool: Pool, result: ranking.Ranking, floor: float | None, tail_writes: int | None = TAIL_WRITES
) -> Plan:
    """Decide the writes of a re-rank (pure): see the module docstring."""
    n = len(pool)
    priorities = result.priorities()
    reasons = result.reasons()
    in_head = np.zeros(n, dtype=bool)
    in_head[result.head] = True
    manual = pool.reason == MANUAL
    rankable = pool.has_task & ~manual & (pool.reason != OTHER)
    keep = in_head | manual | (np.ones(n, dtype=bool) if floor is None else result.tail_priority >= floor)
    cancel = np.flatnonzero(rankable & ~keep)
    create = np.flatnonzero(~pool.has_task & keep)
    stored = np.nan_to_num(pool.priority, nan=-1.0)
    changed = rankable & keep & ((np.abs(stored - priorities) > TAIL_TOLERANCE) | (pool.reason != reasons))
    required = rankable & keep & (in_head | (stored > 1.0)) & ((stored != priorities) | (pool.reason != reasons))
    optional = np.flatnonzero(changed & ~required)
    if tail_writes is not None and len(optional) > tail_writes:
        importance = np.maximum(stored[optional], priorities[optional])
        optional = optional[np.argsort(-importance, kind="stable")[:tail_writes]]
    update = np.union1d(np.flatnonzero(required), optional).astype(np.intp)
    return Plan(update=update, cancel=cancel, create=create, priorities=priorities, reasons=reasons)


def _reason_sql(column: str) -> str:
    return _REASON_OF_CODE.format(v=column)


def _write_tasks(project: Project, pool: Pool, plan: Plan) -> tuple[int, int, int]:
    """The queue's writes, in one short transaction (hand-outs skip the rows it holds)."""
    table = Task._meta.db_table
    now = timezone.now()
    with transaction.atomic():
        written = update_from_arrays(
            table=table,
            key="sample_id",
            columns={
                "sample_id": pool.sample_ids[plan.update],
                "priority": plan.priorities[plan.update],
                "reason": plan.reasons[plan.update].astype(np.int16),
            },
            assignments={"priority": "v.priority", "reason": _reason_sql("v.reason")},
            where=f"{table}.status = %s AND {table}.kind = %s AND {table}.project_id = %s AND {table}.reason <> %s",
            params=[int(TaskStatus.PENDING), TaskKind.LABEL.value, project.pk, Reason.MANUAL.value],
        )
        dropped = 0
        if len(plan.cancel):
            ids = pool.sample_ids[plan.cancel].tolist()
            for start in range(0, len(ids), 5000):
                chunk = ids[start : start + 5000]
                cancelled = list(
                    Task.objects.filter(
                        project_id=project.pk,
                        sample_id__in=chunk,
                        status=TaskStatus.PENDING,
                        kind=TaskKind.LABEL,
                        n_leased=0,
                        n_answers=0,
                    )
                    .exclude(reason=Reason.MANUAL)
                    .values_list("sample_id", flat=True)
                )
                Task.objects.filter(
                    project_id=project.pk, sample_id__in=cancelled, status=TaskStatus.PENDING, kind=TaskKind.LABEL
                ).update(status=TaskStatus.CANCELLED)
                Sample.objects.filter(pk__in=cancelled, status=SampleStatus.QUEUED).update(
                    status=SampleStatus.UNLABELED
                )
                dropped += len(cancelled)
        queued = 0
        if len(plan.create):
            ids = pool.sample_ids[plan.create].tolist()
            for start in range(0, len(ids), 5000):
                chunk = ids[start : start + 5000]
                claimed = set(
                    Sample.objects.filter(pk__in=chunk, project_id=project.pk, status=SampleStatus.UNLABELED)
                    .exclude(Exists(Task.objects.filter(sample=OuterRef("pk"), status=TaskStatus.PENDING)))
                    .values_list("pk", flat=True)
                )
                Sample.objects.filter(pk__in=claimed).update(status=SampleStatus.QUEUED)
                index = {int(sid): i for i, sid in zip(plan.create[start : start + 5000], chunk, strict=True)}
                Task.objects.bulk_create(
                    [
                        Task(
                            project_id=project.pk,
                            sample_id=sid,
                            kind=TaskKind.LABEL,
                            reason=CODES[int(plan.reasons[index[sid]])],
                            priority=float(plan.priorities[index[sid]]),
                            overlap=project.overlap,
                            created_at=now,
                        )
                        for sid in sorted(claimed)
                    ],
                    batch_size=2000,
                )
                queued += len(claimed)
    return written, queued, dropped


def _write_scores(
    pool: Pool, rows: NDArray[np.intp], scored: Scored, model_version: ModelVersion, labels: list[str]
) -> None:
    if not len(rows):
        return
    now = timezone.now()
    sample_ids = pool.sample_ids[rows]
    with transaction.atomic():
        update_from_arrays(
            table=SampleScore._meta.db_table,
            key="sample_id",
            columns={"sample_id": sample_ids, "uncertainty": scored.uncertainty[rows].astype(np.float64)},
            assignments={"uncertainty": "v.uncertainty", "scored_by_id": "%s", "scored_at": "%s"},
            set_params=[model_version.pk, connection.ops.adapt_datetimefield_value(now)],
        )
    if scored.best is None or scored.confidence is None:
        return
    label_case = "CASE v.best " + " ".join(f"WHEN {i} THEN %s" for i in range(len(labels))) + " END"
    if connection.vendor == "postgresql":
        suggestion = f"jsonb_build_object('label', {label_case}, 'confidence', round(v.confidence::numeric, 4))"
    else:
        suggestion = f"json_object('label', {label_case}, 'confidence', round(v.confidence, 4))"
    with transaction.atomic():
        update_from_arrays(
            table=Sample._meta.db_table,
            key="id",
            columns={
                "id": sample_ids,
                "best": scored.best[rows].astype(np.int16),
                "confidence": scored.confidence[rows].astype(np.float64),
            },
            assignments={"suggestion": suggestion},
            set_params=list(labels),
        )


@contextmanager
def _project_lock(project_id: int) -> Iterator[None]:
    """One re-rank of a project at a time (PostgreSQL advisory lock; SQLite serializes writers)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, project_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, project_id])


def _rerank(
    project: Project,
    model_version: ModelVersion | None,
    *,
    first_id: int | None = None,
    last_id: int | None = None,
    head: bool = True,
) -> RerankResult:
    chosen = ProjectSettings.of(project.settings).selection
    seed = (model_version.pk if model_version else 0) * 7919 + project.pk
    with threadpool_limits(1):
        pool = pool_read(project=project, first_id=first_id, last_id=last_id, all_scores=model_version is None)
        if not len(pool):
            return RerankResult(pool=0, head=0, written=0, queued=0, dropped=0)
        if model_version is not None:
            model = registry.load_model(model_version=model_version)
            scored = score_pool(project, model, pool.matrix, chosen["strategy"], seed=seed)
        else:
            stored = np.nan_to_num(pool.stored_uncertainty, nan=0.0)
            scored = Scored(
                uncertainty=stored,
                features=_features_without_model(project, pool.matrix, seed) if head else None,
                best=None,
                confidence=None,
            )
        manual_or_other = (pool.reason == MANUAL) | (pool.reason == OTHER)
        result = ranking.rank_pool(
            uncertainty=scored.uncertainty,
            budgets=chosen["budgets"],
            batch_size=int(chosen["batch_size"]),
            drift=pool.drift,
            features=scored.features,
            diverse=bool(chosen["diverse"]),
            drift_weight=float(chosen["drift_weight"]),
            strategy_reason=ranking.RANDOM if chosen["strategy"] == "random" else ranking.UNCERTAINTY,
            exclude=manual_or_other,
            head_size=None if head else 0,
            rng=np.random.default_rng(seed),
        )
        plan = plan_writes(pool, result, chosen["floor"], tail_writes=TAIL_WRITES if head else None)
    written, queued, dropped = _write_tasks(project, pool, plan)
    if model_version is not None:
        # The head's scores too, where its tasks kept their priorities (the same order from
        # another model): the first hand-outs must show the uncertainty that ranked them.
        touched = np.union1d(np.union1d(plan.update, plan.create), result.head).astype(np.intp)
        _write_scores(pool, touched, scored, model_version, project.labels)
    return RerankResult(pool=len(pool), head=len(result.head), written=written, queued=queued, dropped=dropped)


# ---------------------------------------------------------------- services


def project_rescore(*, project_id: int, model_version_id: int) -> int:
    """Score every unlabeled sample of the project with the model version and re-rank the queue.

    Skips the work unless the model is the project's ranker (``registry.ranker``: the newest
    model, or a champion promoted after it), so that a re-score delivered late (the newest model's,
    after a rollback; an old model's, after a newer one was trained) never overwrites the right
    one. Records the model as the project's scorer. One re-rank of a
    project at a time (an advisory lock on PostgreSQL); each table is written in a short
    transaction of its own. Returns the number of samples scored.
    """
    project = Project.objects.filter(pk=project_id).first()
    model_version = ModelVersion.objects.filter(pk=model_version_id, project_id=project_id).first()
    if project is None or model_version is None:
        return 0
    ranker = registry.ranker(project_id=project_id)
    if ranker is not None and ranker.pk != model_version.pk:
        return 0
    RetrainState.objects.update_or_create(project_id=project_id, defaults={"scorer": model_version})
    with _project_lock(project_id):
        result = _rerank(project, model_version)
    logger.info(
        "project %s: re-scored %s samples with model v%s (head %s, %s rows written, +%s -%s tasks)",
        project_id,
        result.pool,
        model_version.version,
        result.head,
        result.written,
        result.queued,
        result.dropped,
    )
    return result.pool


def scorer_of(*, project_id: int) -> ModelVersion | None:
    """The model that ranks the queue: the one that last re-scored it, else the newest."""
    state = RetrainState.objects.filter(project_id=project_id).select_related("scorer").first()
    return state.scorer if state and state.scorer else registry.newest(project_id=project_id)


def project_rerank(*, project_id: int) -> RerankResult:
    """Re-rank the queue without a new model (after drift scores changed, or settings did): with
    the project's scorer when it has one, else with the uncertainty production's probabilities gave
    at ingest. Same locks and writes as project_rescore."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return RerankResult(pool=0, head=0, written=0, queued=0, dropped=0)
    with _project_lock(project_id):
        return _rerank(project, scorer_of(project_id=project_id))


def samples_score(*, project_id: int, first_id: int, last_id: int) -> int:
    """Score the project's unlabeled samples in [first_id, last_id] that nobody scored yet (sent
    without probabilities), with the model that last re-scored the queue, and place them in the
    queue's tail by their score (the head stays until the next re-score). Idempotent."""
    project = Project.objects.filter(pk=project_id).first()
    model_version = scorer_of(project_id=project_id)
    if project is None or model_version is None:
        return 0
    unscored = (
        SampleScore.objects.filter(
            project_id=project_id,
            sample_id__gte=first_id,
            sample_id__lte=last_id,
            scored_by__isnull=True,
            production_probabilities__isnull=True,
        )
        .values_list("sample_id", flat=True)
        .order_by("sample_id")
    )
    ids = list(unscored)
    if not ids:
        return 0
    with _project_lock(project_id):
        result = _rerank(project, model_version, first_id=ids[0], last_id=ids[-1], head=False)
    return result.pool


def score_matrix(project: Project, model: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    """Probabilities over the project's labels for raw data rows (used by predict)."""
    return pipelines.probabilities_over(model, features.matrix(rows, project.schema), project.labels)


# ---------------------------------------------------------------- manual pushes


class PushError(ValueError):
    """A manual push that names nothing valid (the message says why)."""


@dataclass(frozen=True)
class PushResult:
    pushed: list[str]  # external_ids now queued with reason manual, in hand-out order
    labeled: list[str]  # already labeled: not queued again (send them to review instead)
    unknown: list[str]  # no such sample in the project


def _filtered(project: Project, spec: dict[str, Any]) -> Any:
    """Samples matching a filter: ``{"status": "unlabeled"|"queued", "data": {field: value |
    [values] | {"gte": x, "lte": y, "gt": x, "lt": y}}}``; fields must be in the schema."""
    queryset = Sample.objects.filter(project=project).exclude(status=SampleStatus.LABELED)
    unknown = set(spec) - {"status", "data"}
    if unknown:
        raise PushError(f"unknown filter keys {sorted(unknown)}; known: data, status")
    status = spec.get("status")
    if status is not None:
        if status not in ("unlabeled", "queued"):
            raise PushError("filter.status must be unlabeled or queued")
        queryset = queryset.filter(status=SampleStatus[status.upper()])
    data = spec.get("data") or {}
    if not isinstance(data, dict):
        raise PushError("filter.data must be an object of field: condition")
    for field, condition in data.items():
        if field not in project.schema:
            raise PushError(f"filter.data.{field}: not a field of the schema")
        lookup = f"data__{field}"
        if isinstance(condition, dict):
            ops = set(condition) - {"gte", "lte", "gt", "lt"}
            if ops or not condition:
                raise PushError(f"filter.data.{field}: conditions are gte, lte, gt, lt")
            for op, value in condition.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise PushError(f"filter.data.{field}.{op} must be a number")
                queryset = queryset.filter(**{f"{lookup}__{op}": value})
        elif isinstance(condition, list):
            if not condition or not all(isinstance(v, str | int | float) for v in condition):
                raise PushError(f"filter.data.{field}: a list of values to match")
            queryset = queryset.filter(**{f"{lookup}__in": condition})
        elif isinstance(condition, str | int | float) and not isinstance(condition, bool):
            queryset = queryset.filter(**{lookup: condition})
        else:
            raise PushError(f"filter.data.{field}: a value, a list of values or a range object")
    return queryset


def queue_manual_push(
    *,
    project: Project,
    external_ids: list[str] | None = None,
    filter_spec: dict[str, Any] | None = None,
    limit: int = MANUAL_MAX,
) -> PushResult:
    """Put samples on top of the queue (below reviews) with reason ``manual``, in the order given
    (by external_id) or in id order (by filter, at most ``limit``).

    A queued sample's pending label task takes the manual reason and priority; a sample the floor
    left out gets a task; labeled samples are reported, not queued (review re-opens labels). Re-scores
    leave manual tasks where they are. One transaction; locks the pushed samples' pending tasks.
    """
    if (external_ids is None) == (filter_spec is None):
        raise PushError("send either external_ids or filter")
    if external_ids is not None:
        wanted = list(dict.fromkeys(external_ids))
        if len(wanted) > MANUAL_MAX:
            raise PushError(f"at most {MANUAL_MAX} external_ids per push")
        found = dict(Sample.objects.filter(project=project, external_id__in=wanted).values_list("external_id", "pk"))
        unknown = [e for e in wanted if e not in found]
        order = [found[e] for e in wanted if e in found]
    else:
        assert filter_spec is not None
        unknown = []
        order = list(_filtered(project, filter_spec).order_by("pk").values_list("pk", flat=True)[:limit])
    now = timezone.now()
    with transaction.atomic():
        rows = {
            pk: (external_id, status)
            for pk, external_id, status in Sample.objects.select_for_update()
            .filter(pk__in=order)
            .values_list("pk", "external_id", "status")
        }
        labeled = [rows[pk][0] for pk in order if rows[pk][1] == SampleStatus.LABELED]
        push = [pk for pk in order if rows[pk][1] != SampleStatus.LABELED]
        pending = set(
            Task.objects.select_for_update()
            .filter(sample_id__in=push, status=TaskStatus.PENDING, kind=TaskKind.LABEL)
            .values_list("sample_id", flat=True)
        )
        priority = {pk: MANUAL_PRIORITY - i * MANUAL_STEP for i, pk in enumerate(push)}
        update_from_arrays(
            table=Task._meta.db_table,
            key="sample_id",
            columns={
                "sample_id": np.array([pk for pk in push if pk in pending], dtype=np.int64),
                "priority": np.array([priority[pk] for pk in push if pk in pending], dtype=np.float64),
            },
            assignments={"priority": "v.priority", "reason": "%s"},
            set_params=[Reason.MANUAL.value],
            where=f"{Task._meta.db_table}.status = %s AND {Task._meta.db_table}.kind = %s",
            params=[int(TaskStatus.PENDING), TaskKind.LABEL.value],
        )
        fresh = [pk for pk in push if pk not in pending]
        Task.objects.bulk_create(
            [
                Task(
                    project_id=project.pk,
                    sample_id=pk,
                    kind=TaskKind.LABEL,
                    reason=Reason.MANUAL,
                    priority=priority[pk],
                    overlap=project.overlap,
                    created_at=now,
                )
                for pk in fresh
            ],
            batch_size=2000,
        )
        Sample.objects.filter(pk__in=fresh).update(status=SampleStatus.QUEUED)
    return PushResult(pushed=[rows[pk][0] for pk in push], labeled=labeled, unknown=unknown)
