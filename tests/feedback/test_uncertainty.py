import numpy as np
import pytest

from feedback import uncertainty

P = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]])


def test_margin() -> None:
    assert uncertainty.margin(P) == pytest.approx([0.0, 1.0, 1.0, 0.7])


def test_least_confidence() -> None:
    assert uncertainty.least_confidence(P) == pytest.approx([0.0, 0.75, 1.0, 0.6])


def test_entropy() -> None:
    expected = -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1)) / np.log(3)
    assert uncertainty.entropy(P) == pytest.approx([0.0, np.log(2) / np.log(3), 1.0, expected])


def test_every_strategy_in_unit_range_and_random_is_seeded() -> None:
    for name in ("margin", "least_confidence", "entropy", "random"):
        scores = uncertainty.score(name, P, rng=np.random.default_rng(1))
        assert scores.shape == (4,) and ((scores >= 0) & (scores <= 1)).all()
    first = uncertainty.score("random", P, rng=np.random.default_rng(7))
    assert (first == uncertainty.score("random", P, rng=np.random.default_rng(7))).all()
