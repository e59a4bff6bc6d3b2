"""Turning a finished task's answers into the sample's final label (or a review), by the project's
consensus method, and keeping Dawid-Skene's labels current as answers accumulate.

``task_finalize`` is what the queue calls, in its transaction, when a task has its ``overlap``
answers. It decides by the project's ``consensus.method``:

- ``majority``: the most frequent answer, its share of the answers as the confidence.
- ``dawid_skene``: the posterior of the task's answers under the per-annotator confusion matrices
  of the project's latest Dawid-Skene estimate (one E-step over a handful of answers: the answer
  path never reads the rest of the project). An annotator the estimate has not seen gets the
  prior's matrix, so a project's first answers are decided as by a smoothed majority vote.

Ties and labels less confident than ``consensus.review_below`` go to review instead of becoming
final. Under ``dawid_skene`` each finalize also asks, after commit, for a re-estimate
(``consensus_reestimate``, a Celery task in ``labeling.tasks``): expectation-maximization over every
answer of the project, gold samples clamped to their known label, which updates the final labels
that change (a LabelChange with method ``dawid_skene`` each) and stores the new matrices for the
answer path. Requests are debounced per process (at most one per REESTIMATE_DELAY seconds) and
the task is idempotent on the project's newest answer and gold set.

The estimate is kept in ``DerivedState`` under STATE_KEY (beside, not inside, the project's
settings: what people set is never mixed with what the system derives).
It is small: per annotator a confusion matrix, or only its diagonal once the matrices would pass
FULL_MATRIX_LIMIT numbers, as base64 of float32 bytes (one JSON string: cheap for every reader of
the settings).

The algorithms themselves are pure, in ``labeling.consensus``.
"""

import base64
import hashlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, Max
from django.utils import timezone
from numpy.typing import NDArray

from labeling import events
from labeling.answers import project_answers
from labeling.bulk import binary_copy_payload, update_from_values
from labeling.consensus import dawid_skene, majority_vote, posteriors_given, prior_confusion, top_is_tied
from labeling.models import (
    Annotation,
    DerivedState,
    Gold,
    Label,
    LabelChange,
    LabelMethod,
    Project,
    Task,
    TaskKind,
)
from labeling.project_settings import ProjectSettings
from labeling.services.labels import LabelDecision, labels_set
from labeling.services.review import review_request

logger = logging.getLogger(__name__)

STATE_KEY = "consensus"
# The trail's "why" of a label one answer made (the same on the queue's one-statement path).
ONE_ANSWER = "the one answer"
STATE_VERSION = 2  # 2: matrices and user ids as base64 of their bytes
FULL_MATRIX_LIMIT = 8192  # numbers; beyond it only each matrix's diagonal is stored
REESTIMATE_DELAY = 30  # seconds between re-estimates a process asks for
# Labels whose Dawid-Skene confidence moved by less than this keep their stored confidence: a
# re-estimate then writes only the labels that really changed.
CONFIDENCE_STEP = 0.01
REVISABLE = (LabelMethod.MAJORITY, LabelMethod.DAWID_SKENE)  # never a reviewer's, an import's or an undo's
CHUNK = 5000


@dataclass(frozen=True)
class Decision:
    label: str
    confidence: float
    tied: bool
    n_annotations: int


def task_finalize(*, task: Task) -> None:
    """Decide the final label of a done task's sample by the project's consensus method, or send
    the sample to review (a tie, or a confidence below ``consensus.review_below``).

    Called by labeling.queue with the task row locked; locks nothing else first. Reads the
    project's settings and whether the sample is gold (one query) and the task's answers (one
    query). Gold samples and gold tasks never get a label from answers. Under ``dawid_skene``
    emits, after commit, a debounced request to re-estimate the project.
    """
    if task.kind == TaskKind.GOLD:
        return
    row = (
        Project.objects.filter(pk=task.project_id)
        .annotate(is_gold=Exists(Gold.objects.filter(sample_id=task.sample_id)))
        .values_list("settings", "labels", "is_gold")
        .first()
    )
    if row is None or row[2]:
        return
    stored, project_labels, _ = row
    answers = [
        (label, user_id)
        for label, user_id in Annotation.objects.filter(task_id=task.pk)
        .order_by("created_at", "id")
        .values_list("label", "user_id")
        if label in project_labels
    ]
    if not answers:
        return
    chosen = ProjectSettings.of(stored).consensus
    if chosen["method"] == "dawid_skene":
        state = DerivedState.read(project_id=task.project_id, key=STATE_KEY)
        decision = posterior_decision(state or None, list(project_labels), answers)
        method = LabelMethod.DAWID_SKENE
        consensus_reestimate_soon(project_id=task.project_id)
    else:
        result = majority_vote([label for label, _ in answers])
        decision = Decision(result.label, result.confidence, result.tied, result.n_annotations)
        method = LabelMethod.MAJORITY
    if decision.tied or decision.confidence < chosen["review_below"]:
        review_request(project_id=task.project_id, sample_ids=[task.sample_id])
        return
    # The trail's who and why. A label one answer made is that annotator's (its reason is the
    # answer itself), as on the queue's one-statement path for overlap 1; a label several answers
    # made is the method's, with how it decided.
    actor = User(pk=answers[0][1]) if decision.n_annotations == 1 else None  # the id is all the trail needs
    if decision.n_annotations < 2:
        why = ONE_ANSWER
    elif method == LabelMethod.DAWID_SKENE:
        why = f"Dawid-Skene posterior {decision.confidence:.2f} over {decision.n_annotations} answers"
    else:
        agreeing = round(decision.confidence * decision.n_annotations)
        why = f"majority: {agreeing} of {decision.n_annotations} answers"
    labels_set(
        project_id=task.project_id,
        decisions=[
            LabelDecision(
                sample_id=task.sample_id,
                label=decision.label,
                confidence=decision.confidence,
                method=method,
                n_annotations=decision.n_annotations,
                reason=why,
            )
        ],
        actor=actor,
    )


def posterior_decision(
    state: dict[str, Any] | None, project_labels: list[str], answers: Sequence[tuple[str, int]]
) -> Decision:
    """The Dawid-Skene decision on one sample's ``(label, user_id)`` answers under a stored
    estimate (None: the prior for everyone)."""
    index = {label: i for i, label in enumerate(project_labels)}
    known = [(index[label], user_id) for label, user_id in answers if label in index]
    if not known:
        raise ValueError("none of the answers is a label of the project")
    n_labels = len(project_labels)
    estimate = _estimate_of(state, project_labels)
    users = sorted({user_id for _, user_id in known})
    confusion = np.stack([estimate.matrix(user_id) for user_id in users])
    position = {user_id: i for i, user_id in enumerate(users)}
    posteriors = posteriors_given(
        np.zeros(len(known), dtype=np.intp),
        np.array([position[user_id] for _, user_id in known], dtype=np.intp),
        np.array([label for label, _ in known], dtype=np.intp),
        n_items=1,
        confusion=confusion,
        priors=estimate.priors if estimate.priors is not None else np.full(n_labels, 1.0 / n_labels),
    )
    best = int(posteriors[0].argmax())
    return Decision(
        label=project_labels[best],
        confidence=float(posteriors[0, best]),
        tied=bool(top_is_tied(posteriors)[0]),
        n_annotations=len(known),
    )


@dataclass(frozen=True)
class _Estimate:
    n_labels: int
    priors: NDArray[np.float64] | None
    users: NDArray[np.int64]  # ascending user ids
    stored: NDArray[np.float32]  # (len(users), n_labels * n_labels) or (len(users), n_labels): diagonals

    def matrix(self, user_id: int) -> NDArray[np.float64]:
        """The user's stored matrix, or the prior's for a user the estimate has not seen."""
        i = int(np.searchsorted(self.users, user_id))
        if i >= self.users.size or self.users[i] != user_id:
            return prior_confusion(self.n_labels)
        values = self.stored[i].astype(np.float64)
        n = self.n_labels
        if values.size == n * n:
            matrix = values.reshape(n, n)
        else:  # the diagonal only: errors spread evenly over the other labels
            eye = np.eye(n)
            off = (1.0 - values) / max(n - 1, 1)
            matrix = values[:, None] * eye + off[:, None] * (1.0 - eye)
        out: NDArray[np.float64] = matrix / matrix.sum(axis=1, keepdims=True)
        return out


def _estimate_of(state: dict[str, Any] | None, project_labels: list[str]) -> _Estimate:
    n_labels = len(project_labels)
    if not state or state.get("v") != STATE_VERSION or state.get("labels") != project_labels:
        return _Estimate(n_labels, None, np.zeros(0, dtype=np.int64), np.zeros((0, n_labels), dtype=np.float32))
    users = np.frombuffer(base64.b64decode(state["annotators"]), dtype="<i8").astype(np.int64)
    stored = np.frombuffer(base64.b64decode(state["matrices"]), dtype="<f4").reshape(users.size, state["per"])
    return _Estimate(n_labels, np.asarray(state["priors"], dtype=np.float64), users, stored)


def _state_of(
    project_labels: list[str],
    user_ids: NDArray[np.int64],
    confusion: NDArray[np.float64],
    priors: NDArray[np.float64],
    watermark: int,
    gold_digest: str,
    iterations: int,
    converged: bool,
) -> dict[str, Any]:
    """The estimate as stored. The matrices and user ids go as base64 of their bytes: the answer
    path reads it on every final label under Dawid-Skene, and one string costs the JSON parser
    next to nothing where thousands of numbers would not; it decodes only its users' rows."""
    full = confusion.size <= FULL_MATRIX_LIMIT
    n_labels = len(project_labels)
    # Kept away from 0, so that a stored matrix never rules a class out.
    kept = np.clip(confusion if full else confusion[:, np.arange(n_labels), np.arange(n_labels)], 1e-6, 1)
    flat = kept.reshape(len(user_ids), -1).astype("<f4")
    order = np.argsort(user_ids)
    return {
        "v": STATE_VERSION,
        "labels": project_labels,
        "annotators": base64.b64encode(np.asarray(user_ids, dtype="<i8")[order].tobytes()).decode(),
        "matrices": base64.b64encode(flat[order].tobytes()).decode(),
        "per": int(flat.shape[1]),
        "priors": np.round(priors, 6).tolist(),
        "watermark": watermark,
        "gold": gold_digest,
        "iterations": iterations,
        "converged": converged,
        "estimated_at": timezone.now().isoformat(),
    }


def consensus_reestimate_soon(*, project_id: int) -> None:
    """After the current transaction commits, enqueue a re-estimate of the project in
    REESTIMATE_DELAY seconds, unless this process enqueued one within that time. A broker failure
    is logged, not raised: the labels are safe, and the next answer asks again."""
    transaction.on_commit(partial(_enqueue_reestimate, project_id))


def consensus_reestimate_now(*, project_id: int) -> None:
    """After the current transaction commits, enqueue a re-estimate of the project (a manager's
    request: not debounced; the task is idempotent)."""
    from labeling import tasks

    transaction.on_commit(partial(tasks.consensus_reestimate.delay, project_id))


def _debounce_key(project_id: int) -> str:
    return f"labelloop:consensus-reestimate:{project_id}"


def _enqueue_reestimate(project_id: int) -> None:
    from labeling import tasks

    key = _debounce_key(project_id)
    if not cache.add(key, True, timeout=REESTIMATE_DELAY):
        return
    try:
        tasks.consensus_reestimate.apply_async((project_id,), countdown=REESTIMATE_DELAY)
    except Exception:
        cache.delete(key)
        logger.exception("could not enqueue the consensus re-estimate of project %s", project_id)


@dataclass(frozen=True)
class ReestimateResult:
    changed: int  # final labels whose label changed
    updated: int  # final labels rewritten (changed, or their confidence or method moved)
    sent_to_review: int  # labels Dawid-Skene would change, but not confidently: sent to a reviewer
    skipped: bool  # nothing new since the stored estimate (or another run got there first)


def _gold_digest(gold: list[tuple[int, str]]) -> str:
    text = "\n".join(f"{sample_id}\t{label}" for sample_id, label in sorted(gold))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def consensus_reestimate(*, project_id: int) -> ReestimateResult | None:
    """Re-estimate Dawid-Skene over every answer of a ``dawid_skene`` project (gold samples held at
    their known label), store the estimate for the answer path, and update the final labels that
    it changes. None when the project is gone or decides by majority.

    Only labels made by consensus (methods majority and dawid_skene) are revised, never a
    reviewer's or an import's, nor a gold sample's. A label that would change to one less
    confident than ``review_below`` (or tied) is sent to review instead. Idempotent: returns
    ``skipped`` when the stored estimate already covers the newest answer and the same gold set.
    Reads the project's answers without locks (``labeling.answers``); then, in one transaction,
    locks the project row (serializing re-estimates and settings changes) and revises the labels
    set-based against their current rows (on PostgreSQL one statement over a binary COPY of the
    decisions, which locks the rows it reads), with a LabelChange (method dawid_skene) for each
    whose label changes and labels_finalized after commit when any did.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    chosen = ProjectSettings.of(project.settings).consensus
    if chosen["method"] != "dawid_skene":
        return None
    gold = list(Gold.objects.filter(project_id=project_id).values_list("sample_id", "label"))
    digest = _gold_digest(gold)
    watermark = Annotation.objects.filter(project_id=project_id).aggregate(top=Max("id"))["top"] or 0
    state = DerivedState.read(project_id=project_id, key=STATE_KEY)
    if watermark == 0 or (state.get("watermark") == watermark and state.get("gold") == digest):
        return ReestimateResult(0, 0, 0, skipped=True)

    labels = list(project.labels)
    index = {label: i for i, label in enumerate(labels)}
    answers = project_answers(project=project, up_to=watermark)
    known_gold = [(s, index[g]) for s, g in gold if g in index]
    gold_ids = np.array([s for s, _ in known_gold], dtype=np.int64)
    # Items: the answered samples and the gold ones (a gold sample nobody answered is harmless).
    all_samples = np.union1d(answers.samples, gold_ids)
    items = np.searchsorted(all_samples, answers.samples)[answers.items]
    result = dawid_skene(
        items,
        answers.annotators,
        answers.answer_labels,
        n_items=all_samples.size,
        n_annotators=answers.users.size,
        n_labels=len(labels),
        gold_items=np.searchsorted(all_samples, gold_ids),
        gold_labels=np.array([g for _, g in known_gold], dtype=np.intp),
    )
    # The decisions: one per answered sample that is not gold (gold samples never get a label
    # from answers); "unsure" ones may confirm their label but not change it.
    keep = (result.n_answers > 0) & ~np.isin(all_samples, gold_ids)
    decisions = _Decisions(
        samples=all_samples[keep].astype(np.int64),
        labels=result.labels[keep].astype(np.int64),
        confidence=result.confidence[keep].astype(np.float64),
        n_answers=result.n_answers[keep].astype(np.int64),
        unsure=(top_is_tied(result.posteriors) | (result.confidence < chosen["review_below"]))[keep],
    )
    new_state = _state_of(
        labels, answers.users, result.confusion, result.priors, watermark, digest, result.iterations, result.converged
    )
    with transaction.atomic():
        locked = Project.objects.select_for_update().filter(pk=project_id).first()
        if locked is None:
            return None
        stored = DerivedState.read(project_id=project_id, key=STATE_KEY)
        if (stored.get("watermark") or 0) >= watermark and stored.get("gold") == digest:
            return ReestimateResult(0, 0, 0, skipped=True)
        revise = _revise_postgresql if connection.vendor == "postgresql" else _revise_portable
        updated, changed, to_review = revise(project_id, labels, decisions)
        sent = review_request(project_id=project_id, sample_ids=to_review) if to_review else 0
        DerivedState.write(project_id=project_id, key=STATE_KEY, value=new_state)
        if changed:
            events.emit_labels_finalized(project_id)
    return ReestimateResult(changed=changed, updated=updated, sent_to_review=sent, skipped=False)


@dataclass(frozen=True, eq=False)
class _Decisions:
    samples: NDArray[np.int64]
    labels: NDArray[np.int64]  # index into the project's labels
    confidence: NDArray[np.float64]
    n_answers: NDArray[np.int64]
    unsure: NDArray[np.bool_]  # tied or below review_below


REESTIMATE_REASON = "Dawid-Skene re-estimate"
_temp_names = itertools.count()

# One statement: read the consensus labels the decisions cover (locking them), send the unsure
# changes to review, rewrite the rest where the label, the method or the confidence (by
# CONFIDENCE_STEP) moved, and add a trail row for each whose label changed.
_REVISE_POSTGRESQL = f"""
WITH current AS (
    SELECT l.sample_id, l.label AS old_label, l.method AS old_method, l.confidence AS old_confidence,
           (%(labels)s::text[])[d.label + 1] AS new_label, d.confidence, d.n_answers, d.unsure
    FROM {Label._meta.db_table} l JOIN {{temp}} d ON d.sample_id = l.sample_id
    WHERE l.project_id = %(project)s AND l.method IN ('majority', 'dawid_skene')
    FOR UPDATE OF l
), review AS (
    SELECT sample_id FROM current WHERE new_label <> old_label AND unsure
), updated AS (
    UPDATE {Label._meta.db_table} l
    SET label = c.new_label, confidence = c.confidence, method = 'dawid_skene', n_annotations = c.n_answers,
        updated_at = %(now)s
    FROM current c
    WHERE l.sample_id = c.sample_id
      AND NOT (c.new_label <> c.old_label AND c.unsure)
      AND (c.new_label <> c.old_label OR c.old_method <> 'dawid_skene'
           OR abs(c.confidence - c.old_confidence) >= %(step)s)
    RETURNING l.sample_id, c.old_label, c.new_label
), trail AS (
    INSERT INTO {LabelChange._meta.db_table}
        (project_id, sample_id, old_label, new_label, method, actor_id, reason, created_at)
    SELECT %(project)s, sample_id, old_label, new_label, 'dawid_skene', NULL, %(reason)s, %(now)s
    FROM updated WHERE new_label <> old_label ORDER BY sample_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM updated), (SELECT count(*) FROM trail),
       (SELECT coalesce(array_agg(sample_id ORDER BY sample_id), '{{}}') FROM review)
"""


def _revise_postgresql(project_id: int, labels: list[str], d: _Decisions) -> tuple[int, int, list[int]]:
    """(labels rewritten, labels changed, samples to review). The decisions go in by one binary COPY
    into a temporary table (dropped at commit): no Python object per label, one statement."""
    import psycopg  # PostgreSQL only: the quick start on SQLite does not need the driver

    if d.samples.size == 0:
        return 0, 0, []
    temp = f"reestimate_{next(_temp_names)}"
    payload = binary_copy_payload([d.samples, d.labels, d.confidence, d.n_answers, d.unsure])
    params = {
        "labels": labels,
        "project": project_id,
        "now": timezone.now(),
        "step": CONFIDENCE_STEP,
        "reason": REESTIMATE_REASON,
    }
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {temp} (sample_id bigint PRIMARY KEY, label bigint, confidence double precision,"
            " n_answers bigint, unsure boolean) ON COMMIT DROP",
            prepare=False,
        )
        with cursor.copy(f"COPY {temp} FROM STDIN WITH (FORMAT binary)") as copy:
            copy.write(payload)
        cursor.execute(f"ANALYZE {temp}", prepare=False)
        cursor.execute(_REVISE_POSTGRESQL.replace("{temp}", temp), params, prepare=False)
        row = cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), [int(s) for s in row[2]]


def _revise_portable(project_id: int, labels: list[str], d: _Decisions) -> tuple[int, int, list[int]]:
    """What _revise_postgresql does, with the ORM (SQLite: the transaction holds the whole database)."""
    position = {int(s): i for i, s in enumerate(d.samples.tolist())}
    current = Label.objects.filter(project_id=project_id, method__in=REVISABLE).values_list(
        "sample_id", "label", "confidence", "method"
    )
    rows: list[tuple[int, str, float, str, int]] = []
    old_labels: dict[int, str] = {}
    to_review: list[int] = []
    for sample_id, old_label, old_confidence, old_method in current.iterator(chunk_size=CHUNK):
        i = position.get(sample_id)
        if i is None:
            continue
        new_label, confidence = labels[int(d.labels[i])], float(d.confidence[i])
        if new_label != old_label and d.unsure[i]:
            to_review.append(sample_id)
            continue
        settled = new_label == old_label and old_method == LabelMethod.DAWID_SKENE
        if settled and abs(confidence - old_confidence) < CONFIDENCE_STEP:
            continue
        rows.append((sample_id, new_label, confidence, LabelMethod.DAWID_SKENE.value, int(d.n_answers[i])))
        if new_label != old_label:
            old_labels[sample_id] = old_label
    now = timezone.now()
    table = Label._meta.db_table
    update_from_values(
        table=table,
        key="sample_id",
        columns=["label", "confidence", "method", "n_annotations", "updated_at"],
        rows=[(*row, now) for row in rows],
        where=f"{table}.project_id = %s",
        params=[project_id],
    )
    LabelChange.objects.bulk_create(
        [
            LabelChange(
                project_id=project_id,
                sample_id=sample_id,
                old_label=old_labels[sample_id],
                new_label=new_label,
                method=LabelMethod.DAWID_SKENE,
                actor=None,
                reason=REESTIMATE_REASON,
                created_at=now,
            )
            for sample_id, new_label, *_ in rows
            if sample_id in old_labels
        ],
        batch_size=2000,
    )
    return len(rows), len(old_labels), sorted(to_review)


def consensus_state(*, project: Project) -> dict[str, Any] | None:
    """The stored Dawid-Skene estimate's summary (when, over how many answers), or None."""
    state = DerivedState.read(project_id=project.pk, key=STATE_KEY)
    if not state:
        return None
    return {k: state.get(k) for k in ("estimated_at", "watermark", "iterations", "converged")}
