"""The queue's order: per-reason budgets interleaved batch by batch over the unlabeled pool. Pure
numpy (and ``feedback.diversity``): no ORM, no Django.

The queue hands tasks out by one float, ``priority`` (descending). A ranking therefore has two parts:

- the *head*: the next ``head_size`` hand-outs (``HEAD_BATCHES`` batches of ``batch_size``, at most
  ``HEAD_MAX``), chosen batch by batch. Each batch gives every reason its share of the batch
  (``selection.budgets``; whatever the shares leave goes to uncertainty), the reasons' slots spread
  evenly through the batch (a smooth weighted round-robin, so a batch of 50 with 10% random has a
  random pick every tenth slot, not five at the end). Head priorities decrease strictly along the
  head and lie in (1, ``HEAD_TOP``]: above every tail row, below manual pushes and reviews.
- the *tail*: every other row, by its score (uncertainty, blended with drift by
  ``selection.drift_weight``) in [0, 1], with the reason of the strategy.

What each reason's slots take, among rows not taken yet:

- ``uncertainty``: the most uncertain rows; with ``diverse`` (the default) a diverse batch of them,
  ``feedback.diversity.select_batch`` (k-means over the 10x most uncertain candidates), the
  variant bench/active_learning.py chose;
- ``drift``: rows from a drifted region (per-sample drift score at least ``DRIFT_SAMPLE_MIN``),
  the most drifted first; when none are left the slot goes to uncertainty;
- ``diversity``: representatives of the pool regardless of uncertainty: k-means of a random
  candidate set, the row nearest each centre (random rows when no features are given);
- ``random``: uniformly random rows (a small share keeps the training set unbiased).
"""

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from feedback import diversity

REASONS = ("uncertainty", "drift", "diversity", "random")
UNCERTAINTY, DRIFT, DIVERSITY, RANDOM = range(4)
HEAD_BATCHES = 10
HEAD_MAX = 2000
HEAD_TOP = 1.9
DRIFT_SAMPLE_MIN = 0.5
# Diverse picks are made in blocks of at most this many (k-means cost grows with k x candidates).
DIVERSE_BLOCK = 500


@dataclass(frozen=True)
class Ranking:
    """``head``: pool indices in hand-out order, with their reason codes (indices into REASONS) and
    priorities; ``tail_priority``: every row's priority when it is not in the head (its score);
    ``tail_reason``: the reason code of tail rows."""

    head: NDArray[np.intp]
    head_reasons: NDArray[np.int16]
    head_priorities: NDArray[np.float64]
    tail_priority: NDArray[np.float64]
    tail_reason: int

    def priorities(self) -> NDArray[np.float64]:
        """One priority per pool row (head rows their head priority)."""
        out = self.tail_priority.copy()
        out[self.head] = self.head_priorities
        return out

    def reasons(self) -> NDArray[np.int16]:
        out = np.full(len(self.tail_priority), self.tail_reason, dtype=np.int16)
        out[self.head] = self.head_reasons
        return out


def batch_quotas(budgets: Mapping[str, float], batch_size: int) -> NDArray[np.int64]:
    """Slots per reason (REASONS order) in one batch: each share times the batch, by largest
    remainder; uncertainty gets what the shares leave."""
    shares = np.array([float(budgets.get(name, 0.0)) for name in REASONS])
    shares[UNCERTAINTY] = 0.0
    shares = np.clip(shares, 0.0, 1.0)
    if shares.sum() > 1.0:
        shares = shares / shares.sum()
    shares[UNCERTAINTY] = 1.0 - shares.sum()
    exact = shares * batch_size
    counts = np.floor(exact + 1e-9).astype(np.int64)
    left = batch_size - int(counts.sum())
    if left > 0:
        # Largest remainder first; ties go to the earlier reason (uncertainty first).
        order = np.lexsort((np.arange(len(REASONS)), -(exact - counts)))
        counts[order[:left]] += 1
    return counts


def slot_order(quotas: NDArray[np.int64]) -> NDArray[np.int16]:
    """The reason of each slot of a batch: smooth weighted round-robin, so each reason's slots are
    spread evenly through the batch (ties go to the earlier reason)."""
    total = int(quotas.sum())
    out = np.empty(total, dtype=np.int16)
    current = np.zeros(len(quotas), dtype=np.int64)
    for slot in range(total):
        current += quotas
        pick = int(np.argmax(current))
        out[slot] = pick
        current[pick] -= total
    return out


def head_size_for(pool: int, batch_size: int) -> int:
    return int(min(pool, max(batch_size, min(HEAD_BATCHES * batch_size, HEAD_MAX))))


def _take_random(taken: NDArray[np.bool_], k: int, rng: np.random.Generator) -> NDArray[np.intp]:
    free = int((~taken).sum())
    k = min(k, free)
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if free < 4 * k + 64:
        return rng.permutation(np.flatnonzero(~taken))[:k].astype(np.intp)
    picked: list[int] = []
    seen: set[int] = set()
    while len(picked) < k:
        for index in rng.integers(0, len(taken), size=2 * (k - len(picked)) + 8).tolist():
            if not taken[index] and index not in seen:
                seen.add(index)
                picked.append(index)
                if len(picked) == k:
                    break
    return np.asarray(picked, dtype=np.intp)


def _take_uncertain(
    score: NDArray[np.float64],
    features: Any,
    taken: NDArray[np.bool_],
    k: int,
    diverse: bool,
    rng: np.random.Generator,
) -> NDArray[np.intp]:
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if not diverse or features is None:
        return diversity.top_candidates(score, k, exclude=taken)
    picks: list[NDArray[np.intp]] = []
    mask = taken.copy()
    for start in range(0, k, DIVERSE_BLOCK):
        block = min(DIVERSE_BLOCK, k - start)
        chosen = diversity.select_batch(features, score, block, method="kmeans", exclude=mask, rng=rng).indices
        mask[chosen] = True
        picks.append(chosen)
    return np.concatenate(picks).astype(np.intp)


def _take_representative(features: Any, taken: NDArray[np.bool_], k: int, rng: np.random.Generator) -> NDArray[np.intp]:
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if features is None:
        return _take_random(taken, k, rng)
    # Uniform noise as the "uncertainty" makes the candidates a random subset; power 0 makes the
    # k-means weights equal, so each pick is the row nearest the centre of a region of the pool.
    noise = rng.random(len(taken))
    return diversity.select_batch(
        features, noise, k, method="kmeans", uncertainty_power=0.0, exclude=taken, rng=rng
    ).indices.astype(np.intp)


def rank_pool(
    *,
    uncertainty: NDArray[np.float64],
    budgets: Mapping[str, float],
    batch_size: int,
    drift: NDArray[np.float64] | None = None,
    features: Any = None,
    diverse: bool = True,
    drift_weight: float = 0.0,
    strategy_reason: int = UNCERTAINTY,
    exclude: NDArray[np.bool_] | None = None,
    head_size: int | None = None,
    rng: np.random.Generator | None = None,
) -> Ranking:
    """Rank a pool of ``n`` rows: ``uncertainty`` (n,) in [0, 1]; ``drift`` (n,) per-sample drift
    scores (NaN where not measured); ``features`` (n, d) dense or sparse, the space diversity is
    measured in (None: no diversity, representatives become random rows); ``exclude`` rows that
    keep their place (manual pushes): never in the head. ``strategy_reason`` is the reason code of
    uncertainty slots and tail rows (RANDOM for the random strategy). Cost: O(n) per batch of the
    head plus k-means on each batch's candidates.
    """
    rng = rng or np.random.default_rng()
    u = np.clip(np.nan_to_num(np.asarray(uncertainty, dtype=np.float64), nan=0.0), 0.0, 1.0)
    n = len(u)
    d = np.zeros(n) if drift is None else np.nan_to_num(np.asarray(drift, dtype=np.float64), nan=0.0)
    score = np.clip((1.0 - drift_weight) * u + drift_weight * d, 0.0, 1.0)
    taken = np.zeros(n, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool).copy()
    eligible = int((~taken).sum())
    size = head_size_for(eligible, batch_size) if head_size is None else min(head_size, eligible)
    drift_order = np.flatnonzero((d >= DRIFT_SAMPLE_MIN) & ~taken)
    drift_order = drift_order[np.argsort(-d[drift_order], kind="stable")]
    drift_next = 0
    full_slots = slot_order(batch_quotas(budgets, batch_size))
    head: list[NDArray[np.intp]] = []
    reasons: list[NDArray[np.int16]] = []
    done = 0
    while done < size:
        k = min(batch_size, size - done)
        slots = full_slots if k == batch_size else slot_order(batch_quotas(budgets, k))
        want = np.bincount(slots, minlength=len(REASONS))
        drift_picks: list[int] = []
        while len(drift_picks) < want[DRIFT] and drift_next < len(drift_order):
            index = int(drift_order[drift_next])
            drift_next += 1
            if not taken[index]:
                drift_picks.append(index)
        taken[drift_picks] = True
        random_picks = _take_random(taken, int(want[RANDOM]), rng)
        taken[random_picks] = True
        representative = _take_representative(features, taken, int(want[DIVERSITY]), rng)
        taken[representative] = True
        # Slots that found no row of their reason (no drift left, say) go to uncertainty.
        short = (want[DRIFT] - len(drift_picks)) + (want[RANDOM] - len(random_picks))
        short += want[DIVERSITY] - len(representative)
        uncertain = _take_uncertain(score, features, taken, int(want[UNCERTAINTY] + short), diverse, rng)
        taken[uncertain] = True
        pools: dict[int, deque[int]] = {
            DRIFT: deque(drift_picks),
            RANDOM: deque(random_picks.tolist()),
            DIVERSITY: deque(representative.tolist()),
            UNCERTAINTY: deque(uncertain.tolist()),
        }
        order: list[int] = []
        codes: list[int] = []
        for slot in slots.tolist():
            source = slot if pools[slot] else UNCERTAINTY
            if not pools[source]:
                continue
            order.append(pools[source].popleft())
            codes.append(strategy_reason if source == UNCERTAINTY else source)
        for source in (UNCERTAINTY, DRIFT, DIVERSITY, RANDOM):
            # Anything left over (when uncertainty ran dry first) keeps its own reason.
            for index in pools[source]:
                order.append(index)
                codes.append(strategy_reason if source == UNCERTAINTY else source)
        if not order:
            break
        head.append(np.asarray(order, dtype=np.intp))
        reasons.append(np.asarray(codes, dtype=np.int16))
        done += len(order)
    head_indices = np.concatenate(head) if head else np.empty(0, dtype=np.intp)
    head_reasons = np.concatenate(reasons) if reasons else np.empty(0, dtype=np.int16)
    h = len(head_indices)
    priorities = 1.0 + (HEAD_TOP - 1.0) * (h - np.arange(h, dtype=np.float64)) / max(h, 1)
    return Ranking(
        head=head_indices,
        head_reasons=head_reasons,
        head_priorities=priorities,
        tail_priority=score,
        tail_reason=strategy_reason,
    )
