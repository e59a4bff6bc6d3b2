"""Uncertainty of class-probability rows, higher = more worth a human look. Pure numpy.

Every measure maps a (n_samples, n_classes) matrix to n_samples scores in [0, 1].
"""

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Scores = NDArray[np.float64]


def _top_two(probabilities: NDArray[np.float64]) -> tuple[Scores, Scores]:
    if probabilities.shape[1] == 1:
        return probabilities[:, 0], np.zeros(len(probabilities))
    part = np.partition(probabilities, -2, axis=1)
    return part[:, -1], part[:, -2]


def margin(probabilities: NDArray[np.float64]) -> Scores:
    """1 - (p_first - p_second): 1 when the two likeliest classes tie, 0 when one is certain."""
    first, second = _top_two(probabilities)
    return 1.0 - (first - second)


def least_confidence(probabilities: NDArray[np.float64]) -> Scores:
    """(1 - p_first), scaled to [0, 1] by its maximum (1 - 1/k) for k classes."""
    k = probabilities.shape[1]
    first = probabilities.max(axis=1)
    return (1.0 - first) / (1.0 - 1.0 / k) if k > 1 else np.zeros(len(probabilities))


def entropy(probabilities: NDArray[np.float64]) -> Scores:
    """Shannon entropy divided by log(k)."""
    k = probabilities.shape[1]
    if k < 2:
        return np.zeros(len(probabilities))
    p = np.clip(probabilities, 1e-12, 1.0)
    return -(probabilities * np.log(p)).sum(axis=1) / np.log(k)


MEASURES: dict[str, Callable[[NDArray[np.float64]], Scores]] = {
    "margin": margin,
    "least_confidence": least_confidence,
    "entropy": entropy,
}


def score(strategy: str, probabilities: NDArray[np.float64], rng: np.random.Generator | None = None) -> Scores:
    """Scores for ``strategy``; ``random`` gives uniform noise (an unbiased order)."""
    if strategy == "random":
        return (rng or np.random.default_rng()).random(len(probabilities))
    return np.clip(MEASURES[strategy](probabilities), 0.0, 1.0)
