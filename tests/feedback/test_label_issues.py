from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from feedback.label_issues import find_label_issues, out_of_fold_probabilities


def make_model() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


@pytest.fixture(scope="module")
def wine() -> tuple[NDArray[Any], NDArray[np.intp]]:
    X, y = load_wine(return_X_y=True)
    return X, y.astype(np.intp)


def flip(y: NDArray[np.intp], n_flips: int, n_classes: int, seed: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    rng = np.random.default_rng(seed)
    flipped = rng.choice(y.size, n_flips, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, n_flips)) % n_classes
    return noisy, flipped


def test_finds_most_flipped_labels_with_few_false_alarms_and_suggests_the_true_label(
    wine: tuple[NDArray[Any], NDArray[np.intp]],
) -> None:
    X, y = wine
    noisy, flipped = flip(y, 18, 3, seed=0)  # 10% of 178
    probabilities = out_of_fold_probabilities(make_model, X, noisy, n_classes=3, seed=0)
    issues = find_label_issues(probabilities, noisy)
    found = np.isin(issues.indices, flipped)
    assert found.sum() >= 0.8 * flipped.size  # recall
    assert (~found).sum() <= 3  # false positives
    assert (issues.suggested[found] == y[issues.indices[found]]).mean() >= 0.8
    assert abs(issues.n_estimated - flipped.size) <= 0.3 * flipped.size


def test_a_clean_dataset_gives_few_issues(wine: tuple[NDArray[Any], NDArray[np.intp]]) -> None:
    X, y = wine
    issues = find_label_issues(out_of_fold_probabilities(make_model, X, y, n_classes=3, seed=1), y)
    assert issues.indices.size <= 0.02 * y.size


def test_issues_are_ranked_and_described() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4))
    logits[np.arange(400), labels] += 4.0
    wrong = np.arange(0, 400, 10)
    logits[wrong, (labels[wrong] + 1) % 4] += 8.0  # every tenth row is confidently of the next class
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    issues = find_label_issues(probabilities, labels)
    assert set(wrong) <= set(issues.indices.tolist())
    assert issues.indices.size <= wrong.size + 4
    assert np.all(np.diff(issues.score) <= 0)
    assert np.all((issues.score > 0) & (issues.score <= 1))
    np.testing.assert_array_equal(issues.given, labels[issues.indices])
    np.testing.assert_array_equal(issues.self_confidence, probabilities[issues.indices, issues.given])
    others = probabilities[issues.indices].copy()
    others[np.arange(issues.indices.size), issues.given] = -1
    np.testing.assert_array_equal(issues.suggested, others.argmax(axis=1))
    # Never a label that the model itself finds the most probable.
    assert np.all(probabilities[issues.indices].argmax(axis=1) != issues.given)


def test_thresholds_and_confident_joint_on_a_worked_example() -> None:
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0],  # labeled 0, confidently 0
            [0.7, 0.3, 0.0],  # labeled 0, 0.7 < threshold 0.8: unconfident unless another class reaches its own
            [0.2, 0.8, 0.0],  # labeled 1, confidently 1
            [0.1, 0.9, 0.0],  # labeled 1
            [0.85, 0.15, 0.0],  # labeled 1 but confidently 0
            [0.0, 0.2, 0.8],  # labeled 2
        ]
    )
    labels = np.array([0, 0, 1, 1, 1, 2])
    issues = find_label_issues(probabilities, labels)
    np.testing.assert_allclose(issues.thresholds, [0.8, (0.8 + 0.9 + 0.15) / 3, 0.8])
    # Row 1: p0=0.7 < 0.8 and p1=0.3 < 0.617: unconfident, counted nowhere.
    np.testing.assert_array_equal(issues.confident_joint, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    # Raw off-diagonal 1; calibrated: row 0 scaled 2/1 adds nothing off-diagonal, so still 1.
    assert issues.n_estimated == pytest.approx(1.0)
    assert issues.indices.tolist() == [4]
    assert (issues.suggested.tolist(), issues.given.tolist()) == ([0], [1])


def test_a_class_nobody_was_given_has_no_threshold() -> None:
    probabilities = np.array([[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.8, 0.2, 0.0], [0.2, 0.8, 0.0]])
    issues = find_label_issues(probabilities, np.array([0, 1, 0, 1]))
    assert np.isnan(issues.thresholds[2])
    assert issues.confident_joint[:, 2].sum() == 0


def test_input_is_checked() -> None:
    with pytest.raises(ValueError):
        find_label_issues(np.full((2, 2), 0.5), np.array([0, 2]))
    with pytest.raises(ValueError):
        find_label_issues(np.full((2, 2), 0.5), np.array([0]))


def test_out_of_fold_probabilities_cover_every_class_even_rare_ones(
    wine: tuple[NDArray[Any], NDArray[np.intp]],
) -> None:
    X, y = wine
    rows = np.concatenate([np.flatnonzero(y == 0)[:30], np.flatnonzero(y == 1)[:30], np.flatnonzero(y == 2)[:1]])
    target = np.concatenate([y[rows][:60], [3]])  # class 3: a single row; class 2: none; folds > members
    target[:2] = 2  # class 2: two rows, fewer than the five folds
    probabilities = out_of_fold_probabilities(make_model, X[rows], target, n_classes=5, seed=0)
    assert probabilities.shape == (61, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert np.all(probabilities[:, 4] == 0)  # a class never given is never predicted
    assert probabilities[60, 3] == 0  # the single row of class 3 was never in a training fold with it
    assert (probabilities[2:60].argmax(axis=1) == target[2:60]).mean() > 0.9  # out of fold, still mostly right


def test_out_of_fold_with_one_class_is_certain_of_it() -> None:
    probabilities = out_of_fold_probabilities(make_model, np.zeros((4, 2)), np.array([1, 1, 1, 1]), n_classes=3)
    np.testing.assert_array_equal(probabilities, [[0, 1, 0]] * 4)


def test_out_of_fold_needs_a_class_with_two_rows() -> None:
    with pytest.raises(ValueError, match="at least two rows"):
        out_of_fold_probabilities(make_model, np.zeros((3, 2)), np.array([0, 1, 2]))
