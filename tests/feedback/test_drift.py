import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from threadpoolctl import threadpool_limits

from feedback import drift, features

KINDS = {"amount": "numeric", "country": "categorical", "comment": "text"}
WORDS = np.array(["late", "refund", "great", "broken", "thanks", "slow", "fine", "again"])


@pytest.fixture(autouse=True)
def one_thread() -> object:
    # The fits here are tiny: OpenMP threads on a busy 2-core machine only spin-wait.
    with threadpool_limits(1):
        yield


def sample(rng: np.random.Generator, n: int, shift: float = 0.0, mix: tuple[float, ...] = (0.5, 0.3, 0.2)) -> dict:
    return {
        "amount": rng.normal(shift, 1.0, n),
        "country": rng.choice(["fr", "de", "it"], n, p=mix),
        "comment": np.array([" ".join(rng.choice(WORDS, 4)) for _ in range(n)], dtype=object),
    }


def test_ks_matches_scipy_and_drops_missing_values() -> None:
    ref = np.array([0.1, 0.4, 0.35, 0.8, 1.2, np.nan])
    win = np.array([0.5, 0.9, 1.1, 1.3, 1.7, 2.0])
    expected = stats.ks_2samp(ref[:-1], win)
    assert drift.ks_test(ref, win) == pytest.approx((expected.statistic, expected.pvalue))


def test_wasserstein_is_normalized_by_the_reference_spread() -> None:
    ref = np.array([0.0, 1.0, 2.0, 3.0])
    assert drift.wasserstein_normalized(ref, ref + 1.0) == pytest.approx(1.0 / ref.std())
    win = np.array([0.0, 2.0, 2.0, 5.0])
    assert drift.wasserstein_normalized(ref, win) == pytest.approx(stats.wasserstein_distance(ref, win) / ref.std())
    constant = np.zeros(4)
    assert drift.wasserstein_normalized(constant, constant) == 0.0
    assert drift.wasserstein_normalized(constant, np.ones(4)) == pytest.approx(2.0)  # 1 / pooled std 0.5


def test_chi_square_matches_scipy_and_pools_rare_categories() -> None:
    ref, win = [30, 20, 50], [20, 30, 50]
    expected = stats.chi2_contingency(np.array([ref, win]), correction=False)
    assert drift.chi_square(ref, win) == pytest.approx((expected.statistic, expected.pvalue))
    # Categories 3 and 4 are expected fewer than 5 times in a row: they are tested as one.
    table = np.array([[40, 30, 4, 3], [35, 35, 3, 4]], dtype=float)
    pooled = drift.pool_rare(table)
    assert pooled.tolist() == [[30, 40, 7], [35, 35, 7]]
    expected = stats.chi2_contingency(pooled, correction=False)
    assert drift.chi_square(table[0], table[1]) == pytest.approx((expected.statistic, expected.pvalue))
    # Pooled, they are still too rare: the smallest other category joins them.
    assert drift.pool_rare(np.array([[40, 30, 2, 1], [35, 35, 3, 2]], dtype=float)).tolist() == [[40, 33], [35, 40]]
    assert drift.chi_square([10, 0], [12, 0]) == (0.0, 1.0)  # a single category: nothing to test


def test_category_counts_cover_the_union_with_missing_as_a_category() -> None:
    ref_counts, win_counts, categories = drift.category_counts(["a", "b", "a", None], ["b", "c"])
    assert categories == [drift.MISSING, "a", "b", "c"]
    assert ref_counts.tolist() == [1, 2, 1, 0] and win_counts.tolist() == [0, 0, 1, 1]


def test_js_distance_matches_scipy_and_debias_removes_sampling_noise() -> None:
    p, q = np.array([10.0, 20.0, 70.0]), np.array([30.0, 30.0, 40.0])
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    bias = 2 / 8 * (1 / 100 + 1 / 100) / np.log(2)
    assert drift.js_distance(p, q, debias=True) == pytest.approx(np.sqrt(jensenshannon(p, q, base=2) ** 2 - bias))
    assert drift.js_distance(p, p) == 0.0
    # Two samples of one 1000-category distribution (hashed text, say): apart raw, close once debiased.
    rng = np.random.default_rng(0)
    a, b = (np.bincount(rng.integers(0, 1000, 9000), minlength=1000) for _ in range(2))
    assert drift.js_distance(a, b) > 0.15 and drift.js_distance(a, b, debias=True) < 0.1


def test_holm_and_benjamini_hochberg() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert drift.adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert drift.adjust_p_values(p, "bh") == pytest.approx(stats.false_discovery_control(p, method="bh"))
    assert drift.adjust_p_values(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert drift.adjust_p_values([0.5, 0.9], "holm").tolist() == [1.0, 1.0]
    assert drift.adjust_p_values(p, "none").tolist() == p


def test_large_stationary_window_is_not_flagged_but_a_shifted_one_is() -> None:
    rng = np.random.default_rng(1)
    reference = sample(rng, 10_000)
    stationary = drift.feature_drift(KINDS, reference, sample(rng, 10_000))
    assert not any(f.drifted for f in stationary.values())
    shifted = drift.feature_drift(KINDS, reference, sample(rng, 2_000, shift=0.5, mix=(0.2, 0.3, 0.5)))
    assert shifted["amount"].drifted and shifted["amount"].test == "ks"
    assert shifted["country"].drifted and shifted["country"].test == "chi2"
    assert not shifted["comment"].drifted


def test_significant_but_negligible_shift_is_not_drift() -> None:
    rng = np.random.default_rng(2)
    reference = {"amount": rng.normal(0.0, 1.0, 50_000)}
    window = {"amount": rng.normal(0.04, 1.0, 50_000)}
    result = drift.feature_drift({"amount": "numeric"}, reference, window)["amount"]
    assert result.p_value is not None and result.p_value < 1e-4  # a p-value alone would raise the alarm
    assert result.effect < 0.1 and not result.drifted


def test_text_drift_on_hashed_tokens() -> None:
    rng = np.random.default_rng(3)
    reference = sample(rng, 1000)
    window = sample(rng, 1000)
    assert not drift.feature_drift(KINDS, reference, window)["comment"].drifted
    window["comment"] = np.array([" ".join(rng.choice(WORDS[:3], 4)) for _ in range(1000)], dtype=object)
    result = drift.feature_drift(KINDS, reference, window)["comment"]
    assert result.test == "chi2_hashed_tokens" and result.drifted


def test_domain_classifier_auroc_near_half_for_one_distribution_and_near_one_when_separated() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(500, 3))
    same = drift.domain_classifier(reference, rng.normal(size=(500, 3)))
    assert abs(same.auroc - 0.5) < 0.06 and not same.drifted
    assert same.sample_scores.shape == (500,)
    far = drift.domain_classifier(reference, rng.normal(size=(500, 3)) + np.array([4.0, 0.0, 0.0]), folds=3)
    assert far.auroc > 0.97 and far.ci_low > 0.9 and far.drifted


def test_domain_classifier_scores_the_drifted_region_and_rows_outside_the_subsample() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(400, 2))
    window = np.vstack([rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + 3.0])
    result = drift.domain_classifier(reference, window, max_rows=400, folds=3)
    assert result.sample_scores.shape == (800,) and np.isfinite(result.sample_scores).all()
    assert result.sample_scores[400:].mean() > result.sample_scores[:400].mean() + 0.3
    assert result.drifted


def test_auroc_interval_narrows_with_samples() -> None:
    low_small, high_small = drift.auroc_interval(0.6, 50, 50)
    low_big, high_big = drift.auroc_interval(0.6, 5000, 5000)
    assert low_small < low_big < 0.6 < high_big < high_small
    assert low_small < 0.5  # 50 vs 50: 0.6 is not yet evidence of drift


def test_window_drift_answers_in_the_api_shape() -> None:
    rng = np.random.default_rng(6)
    reference, window = sample(rng, 300), sample(rng, 200, shift=2.0)
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    result = drift.window_drift(
        KINDS,
        reference,
        window,
        reference_features=reference["amount"][:, None],
        window_features=window["amount"][:, None],
        start=start,
        end=end,
    ).as_dict()
    assert set(result) == {"start", "end", "n", "drifted", "score", "features"}
    assert result["start"] == "2026-01-01T00:00:00+00:00" and result["n"] == 200
    assert result["drifted"] is True and result["score"] > 0.8
    assert set(result["features"]) == set(KINDS)
    assert {"test", "statistic", "p_value", "drifted"} <= set(result["features"]["amount"])
    assert result["features"]["amount"]["drifted"] is True
    json.dumps(result, allow_nan=False)  # what the API renders: no NaN, no infinity, no numpy types


def test_a_feature_missing_on_one_side_is_not_drift_and_leaves_the_others_alone() -> None:
    rng = np.random.default_rng(7)
    reference = {"amount": rng.normal(size=200), "score": rng.normal(size=200)}
    window = {"amount": np.full(100, np.nan), "score": rng.normal(3.0, 1.0, 100)}
    result = drift.feature_drift({"amount": "numeric", "score": "numeric"}, reference, window)
    assert result["amount"].p_value == 1.0 and not result["amount"].drifted
    assert result["score"].drifted


def test_columns_of_a_feature_matrix_by_field() -> None:
    schema = {"amount": "numeric", "photo": "image", "country": "categorical"}
    X = features.matrix([{"amount": 1.5, "country": "fr"}, {"amount": None, "country": "de"}], schema)
    columns = drift.columns_of(schema, X)
    assert set(columns) == {"amount", "country"}
    assert columns["amount"][0] == 1.5 and np.isnan(columns["amount"][1])
    assert columns["country"].tolist() == ["fr", "de"]


def test_windows_by_count_follow_observed_at() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    observed = [t0 + timedelta(minutes=m) for m in (5, 1, 3, 2, 4, 0, 6)]
    windows = drift.windows_by_count(observed, 3)
    assert [w.indices.tolist() for w in windows] == [[5, 1, 3], [2, 4, 0], [6]]
    assert windows[0].start == t0 and windows[0].end == t0 + timedelta(minutes=2) and windows[2].n == 1
    as_numpy = np.array(["2026-03-01T00:05", "2026-03-01T00:01", "2026-03-01T00:03"], dtype="datetime64[ns]")
    assert [w.indices.tolist() for w in drift.windows_by_count(as_numpy, 2)] == [[1, 2], [0]]
    with pytest.raises(ValueError):
        drift.windows_by_count(observed, 0)


def test_windows_by_span_skip_empty_spans() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    observed = [t0 + timedelta(hours=h) for h in (0.5, 0, 1.2, 5.1, 1.9)]
    windows = drift.windows_by_span(observed, timedelta(hours=1))
    assert [w.indices.tolist() for w in windows] == [[1, 0], [2, 4], [3]]
    shifted = drift.windows_by_span(observed, timedelta(hours=1), origin=t0 - timedelta(minutes=30))
    assert [w.indices.tolist() for w in shifted] == [[1], [0, 2], [4], [3]]
    assert drift.windows_by_span([], timedelta(hours=1)) == []
