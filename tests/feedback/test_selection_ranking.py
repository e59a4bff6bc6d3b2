"""feedback/ranking.py and selection.plan_writes: budgets, interleaving, head and tail, on small
arrays with known answers (pure: no database)."""

import itertools

import numpy as np
import pytest

from feedback import ranking
from feedback.selection import MANUAL, NO_TASK, Pool, plan_writes

DEFAULT = {"uncertainty": 0.7, "drift": 0.1, "diversity": 0.1, "random": 0.1}


def test_batch_quotas_follow_the_shares_and_give_the_rest_to_uncertainty() -> None:
    assert ranking.batch_quotas(DEFAULT, 50).tolist() == [35, 5, 5, 5]
    assert ranking.batch_quotas(DEFAULT, 10).tolist() == [7, 1, 1, 1]
    assert ranking.batch_quotas({"drift": 0.25}, 4).tolist() == [3, 1, 0, 0]
    # Largest remainder: 0.15 * 10 = 1.5 and 0.05 * 10 = 0.5; uncertainty (8) gets its 0.0 remainder.
    assert ranking.batch_quotas({"drift": 0.15, "random": 0.05}, 10).tolist() == [8, 2, 0, 0]
    assert ranking.batch_quotas({}, 3).tolist() == [3, 0, 0, 0]
    assert ranking.batch_quotas(DEFAULT, 1).tolist() == [1, 0, 0, 0]


def test_slots_spread_each_reason_through_the_batch() -> None:
    slots = ranking.slot_order(np.array([7, 1, 1, 1])).tolist()
    assert sorted(slots) == [0] * 7 + [1, 2, 3]
    assert slots[0] == 0 and slots[1] == 0
    positions = [i for i, s in enumerate(slots) if s != 0]
    assert all(b - a >= 2 for a, b in itertools.pairwise(positions))  # never two in a row
    assert ranking.slot_order(np.array([2, 0, 0, 2])).tolist() == [0, 3, 0, 3]


def test_pure_uncertainty_head_is_the_most_uncertain_in_order() -> None:
    u = np.array([0.1, 0.9, 0.5, 0.95, 0.3, 0.7])
    result = ranking.rank_pool(uncertainty=u, budgets={}, batch_size=2, diverse=False, head_size=4)
    assert result.head.tolist() == [3, 1, 5, 2]
    assert result.head_reasons.tolist() == [ranking.UNCERTAINTY] * 4
    assert result.head_priorities.tolist() == pytest.approx([1.9, 1.675, 1.45, 1.225])
    assert result.tail_priority.tolist() == pytest.approx(u.tolist())
    priorities = result.priorities()
    # The head sorts above every tail row, then the tail by uncertainty.
    assert np.argsort(-priorities, kind="stable").tolist() == [3, 1, 5, 2, 4, 0]


def test_drift_slots_take_the_most_drifted_rows_and_fall_back_to_uncertainty() -> None:
    u = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    drift = np.array([np.nan, 0.1, np.nan, 0.95, np.nan, 0.6, 0.4, np.nan])
    result = ranking.rank_pool(
        uncertainty=u, drift=drift, budgets={"drift": 0.5}, batch_size=4, diverse=False, head_size=8
    )
    codes = dict(zip(result.head.tolist(), result.head_reasons.tolist(), strict=True))
    assert codes[3] == ranking.DRIFT and codes[5] == ranking.DRIFT  # drift >= 0.5 only
    assert [i for i, c in codes.items() if c == ranking.DRIFT] == [3, 5]  # the most drifted first
    # Row 6 (drift 0.4) is not from a drifted region: it gets in as uncertainty, like the rest.
    assert codes[6] == ranking.UNCERTAINTY and len(result.head) == 8


def test_drift_weight_blends_drift_into_the_score() -> None:
    u = np.array([0.5, 0.6])
    drift = np.array([1.0, 0.0])
    result = ranking.rank_pool(uncertainty=u, drift=drift, budgets={}, batch_size=1, drift_weight=0.5, head_size=0)
    assert result.tail_priority.tolist() == pytest.approx([0.75, 0.3])


def test_excluded_rows_never_enter_the_head() -> None:
    u = np.array([0.99, 0.1, 0.5, 0.98])
    exclude = np.array([True, False, False, False])
    result = ranking.rank_pool(uncertainty=u, budgets={}, batch_size=2, diverse=False, exclude=exclude, head_size=3)
    assert result.head.tolist() == [3, 2, 1]


def test_random_and_diversity_slots_pick_distinct_rows_with_their_reasons() -> None:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(10.0 * c, 0.1, size=(40, 2)) for c in range(5)])
    u = np.concatenate([np.full(40, 0.9 - 0.1 * c) for c in range(5)])
    result = ranking.rank_pool(
        uncertainty=u,
        features=X,
        budgets={"random": 0.2, "diversity": 0.2},
        batch_size=10,
        head_size=20,
        rng=np.random.default_rng(1),
    )
    assert len(result.head) == 20 and len(set(result.head.tolist())) == 20
    assert np.bincount(result.head_reasons, minlength=4).tolist() == [12, 0, 4, 4]
    # Diverse uncertainty picks spread over clusters instead of taking the top cluster only.
    uncertain = result.head[result.head_reasons == ranking.UNCERTAINTY][:6]
    assert len(set((uncertain // 40).tolist())) > 1


def test_random_strategy_names_its_slots_random() -> None:
    result = ranking.rank_pool(
        uncertainty=np.linspace(0, 1, 10), budgets={}, batch_size=5, strategy_reason=ranking.RANDOM, head_size=5
    )
    assert set(result.head_reasons.tolist()) == {ranking.RANDOM} and result.tail_reason == ranking.RANDOM


def _pool(priority: list[float], reason: list[int], has_task: list[bool]) -> Pool:
    n = len(priority)
    return Pool(
        sample_ids=np.arange(100, 100 + n, dtype=np.int64),
        has_task=np.array(has_task),
        priority=np.array(priority, dtype=np.float64),
        reason=np.array(reason, dtype=np.int16),
        drift=np.full(n, np.nan),
        stored_uncertainty=np.full(n, np.nan),
        matrix=np.empty((n, 0), dtype=object),
    )


def test_plan_writes_head_demotions_floor_and_tail_cap() -> None:
    # Rows: 0 old head leaving it, 1 new head, 2 tail unchanged, 3 tail changed, 4 below the floor,
    # 5 without a task but above the floor, 6 manual (left alone), 7 without a task below the floor.
    pool = _pool(
        priority=[1.5, 0.2, 0.40, 0.10, 0.30, np.nan, 1.95, np.nan],
        reason=[0, 0, 0, 0, 0, NO_TASK, MANUAL, NO_TASK],
        has_task=[True, True, True, True, True, False, True, False],
    )
    result = ranking.Ranking(
        head=np.array([1]),
        head_reasons=np.array([0], dtype=np.int16),
        head_priorities=np.array([1.9]),
        tail_priority=np.array([0.6, 0.9, 0.405, 0.5, 0.05, 0.7, 0.2, 0.01]),
        tail_reason=0,
    )
    plan = plan_writes(pool, result, floor=0.1)
    assert plan.update.tolist() == [0, 1, 3]  # 2 moved less than the tolerance
    assert plan.cancel.tolist() == [4]
    assert plan.create.tolist() == [5]
    assert plan.priorities[[0, 1, 3]].tolist() == pytest.approx([0.6, 1.9, 0.5])
    # No floor: nothing is cancelled and every row without a task gets one.
    assert plan_writes(pool, result, floor=None).create.tolist() == [5, 7]
    # The tail cap keeps the required rows (head, old head) and the most useful optional ones.
    capped = plan_writes(pool, result, floor=None, tail_writes=0)
    assert capped.update.tolist() == [0, 1]
