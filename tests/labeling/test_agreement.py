import itertools
import math

import krippendorff
import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from labeling.agreement import agreement, cohen_kappas, fleiss_kappa, krippendorff_alpha

Triples = tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]


def triples_from_matrix(matrix: NDArray[np.float64]) -> Triples:
    """(annotator x item) reliability data, NaN for no answer, as (item, annotator, label) arrays."""
    annotators, items = np.nonzero(~np.isnan(matrix))
    return items, annotators, matrix[annotators, items].astype(np.intp)


def random_matrix(seed: int, n_annotators: int, n_items: int, n_labels: int, answered: float) -> NDArray[np.float64]:
    """Answers that agree more than chance: each item has a true label that annotators give with
    probability 0.6, otherwise a uniform one; each answer is there with probability ``answered``."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n_items)
    noise = rng.integers(0, n_labels, (n_annotators, n_items))
    matrix = np.where(rng.random((n_annotators, n_items)) < 0.6, truth, noise).astype(np.float64)
    matrix[rng.random(matrix.shape) >= answered] = np.nan
    return matrix


# Reliability data from the krippendorff package's documentation (Krippendorff's own example):
# three coders, fifteen units, with missing answers and units answered once.
KRIPPENDORFF_EXAMPLE = np.array(
    [
        [np.nan, np.nan, np.nan, np.nan, np.nan, 3, 4, 1, 2, 1, 1, 3, 3, np.nan, 3],
        [1, np.nan, 2, 1, 3, 3, 4, 3, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
        [np.nan, np.nan, 2, 1, 3, 4, 4, np.nan, 2, 1, 1, 3, 3, np.nan, 4],
    ]
)

ALPHA_CASES = [
    ("krippendorff-example", KRIPPENDORFF_EXAMPLE - 1, 4),
    ("sparse-4-labels", random_matrix(1, 6, 80, 4, answered=0.45), 4),
    ("dense-3-labels", random_matrix(2, 4, 60, 3, answered=0.9), 3),
    ("binary-very-sparse", random_matrix(3, 12, 150, 2, answered=0.2), 2),
    ("many-labels", random_matrix(4, 5, 200, 7, answered=0.6), 7),
]


@pytest.mark.parametrize(("name", "matrix", "n_labels"), ALPHA_CASES, ids=[c[0] for c in ALPHA_CASES])
def test_alpha_equals_the_krippendorff_package_with_missing_and_unequal_answers(
    name: str, matrix: NDArray[np.float64], n_labels: int
) -> None:
    items, _, labels = triples_from_matrix(matrix)
    per_item = np.bincount(items, minlength=matrix.shape[1])
    assert len(set(per_item[per_item > 0])) > 1  # unequal numbers of answers per item
    expected = krippendorff.alpha(
        reliability_data=matrix, level_of_measurement="nominal", value_domain=list(range(n_labels))
    )
    got = krippendorff_alpha(items, labels, n_items=matrix.shape[1], n_labels=n_labels)
    assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("name", "matrix", "n_labels"), ALPHA_CASES, ids=[c[0] for c in ALPHA_CASES])
def test_per_label_alpha_is_the_package_on_one_vs_rest_answers(
    name: str, matrix: NDArray[np.float64], n_labels: int
) -> None:
    items, annotators, labels = triples_from_matrix(matrix)
    result = agreement(
        items, annotators, labels, n_items=matrix.shape[1], n_annotators=matrix.shape[0], n_labels=n_labels
    )
    for label in range(n_labels):
        binary = np.where(np.isnan(matrix), np.nan, (matrix == label).astype(np.float64))
        expected = krippendorff.alpha(reliability_data=binary, level_of_measurement="nominal", value_domain=[0, 1])
        assert result.per_label_alpha[label] == pytest.approx(expected, abs=1e-9)
        alone = krippendorff_alpha(items, labels, n_items=matrix.shape[1], n_labels=n_labels, one_vs_rest=label)
        assert alone == result.per_label_alpha[label]


def test_alpha_is_unchanged_by_items_with_a_single_answer() -> None:
    matrix = random_matrix(5, 3, 40, 3, answered=1.0)
    items, _, labels = triples_from_matrix(matrix)
    lonely_items = np.arange(40, 50)
    with_lonely = krippendorff_alpha(
        np.concatenate([items, lonely_items]), np.concatenate([labels, lonely_items % 3]), n_items=50, n_labels=3
    )
    assert with_lonely == pytest.approx(krippendorff_alpha(items, labels, n_items=40, n_labels=3), abs=1e-12)


FLEISS_CASES = [
    (seed, n_raters, n_items, n_labels)
    for seed, (n_raters, n_items, n_labels) in enumerate([(3, 50, 4), (5, 120, 3), (2, 80, 2), (7, 30, 6)])
]


@pytest.mark.parametrize(("seed", "n_raters", "n_items", "n_labels"), FLEISS_CASES)
def test_fleiss_equals_statsmodels_and_ignores_single_answer_items(
    seed: int, n_raters: int, n_items: int, n_labels: int
) -> None:
    matrix = random_matrix(seed, n_raters, n_items, n_labels, answered=1.0)
    table, _ = aggregate_raters(matrix.T.astype(int), n_cat=n_labels)
    expected = statsmodels_fleiss(table)
    items, annotators, labels = triples_from_matrix(matrix)
    assert fleiss_kappa(items, labels, n_items=n_items, n_labels=n_labels) == pytest.approx(expected, abs=1e-9)
    # Items answered once cannot show agreement or disagreement: Fleiss' kappa leaves them out.
    lonely = np.arange(n_items, n_items + 7)
    padded = fleiss_kappa(
        np.concatenate([items, lonely]),
        np.concatenate([labels, lonely % n_labels]),
        n_items=n_items + 7,
        n_labels=n_labels,
    )
    assert padded == pytest.approx(expected, abs=1e-9)
    result = agreement(items, annotators, labels, n_items=n_items, n_annotators=n_raters, n_labels=n_labels)
    for label in range(n_labels):
        binary_table, _ = aggregate_raters(np.equal(matrix.T, label).astype(int), n_cat=2)
        assert result.per_label_fleiss_kappa[label] == pytest.approx(statsmodels_fleiss(binary_table), abs=1e-9)


def test_fleiss_on_the_textbook_table() -> None:
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters each, 5 categories; kappa 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    items = np.repeat(np.repeat(np.arange(10), 5), table.ravel())
    labels = np.repeat(np.tile(np.arange(5), 10), table.ravel())
    got = fleiss_kappa(items, labels, n_items=10, n_labels=5)
    assert got == pytest.approx(statsmodels_fleiss(table), abs=1e-9)
    assert got == pytest.approx(0.210, abs=5e-4)


COHEN_CASES = [(11, 5, 90, 3, 0.6), (12, 8, 60, 4, 0.4), (13, 4, 200, 2, 0.8), (14, 3, 40, 5, 1.0)]


# scikit-learn warns where a pair saw a single label; both sides then say NaN, which is compared.
@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.parametrize(("seed", "n_annotators", "n_items", "n_labels", "answered"), COHEN_CASES)
def test_pairwise_cohen_equals_scikit_learn_on_shared_items(
    seed: int, n_annotators: int, n_items: int, n_labels: int, answered: float
) -> None:
    matrix = random_matrix(seed, n_annotators, n_items, n_labels, answered)
    items, annotators, labels = triples_from_matrix(matrix)
    result = agreement(items, annotators, labels, n_items=n_items, n_annotators=n_annotators, n_labels=n_labels)
    per_label = [
        cohen_kappas(
            items, annotators, labels, n_items=n_items, n_annotators=n_annotators, n_labels=n_labels, one_vs_rest=label
        )
        for label in range(n_labels)
    ]
    kappas, shared = [], []
    binary_kappas: list[list[float]] = [[] for _ in range(n_labels)]
    for a, b in itertools.combinations(range(n_annotators), 2):
        both = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
        assert result.cohen.shared[a, b] == result.cohen.shared[b, a] == both.sum()
        expected = cohen_kappa_score(matrix[a, both], matrix[b, both])
        assert result.cohen.kappa[a, b] == pytest.approx(expected, abs=1e-9)
        assert result.cohen.kappa[b, a] == result.cohen.kappa[a, b]
        kappas.append(expected)
        shared.append(both.sum())
        for label in range(n_labels):
            binary = cohen_kappa_score(matrix[a, both] == label, matrix[b, both] == label)
            assert per_label[label].kappa[a, b] == pytest.approx(binary, abs=1e-9, nan_ok=True)
            binary_kappas[label].append(binary)
    assert result.cohen.mean == pytest.approx(np.average(kappas, weights=shared), abs=1e-9)
    assert result.cohen.n_pairs == len(kappas)
    for label in range(n_labels):
        defined = ~np.isnan(binary_kappas[label])
        weighted = np.average(np.array(binary_kappas[label])[defined], weights=np.array(shared)[defined])
        assert result.per_label_cohen[label] == pytest.approx(weighted, abs=1e-9)
    assert np.isnan(np.diag(result.cohen.kappa)).all()


def test_cohen_leaves_pairs_that_never_met_undefined_and_out_of_the_mean() -> None:
    # Annotators 0 and 1 share items 0-3; annotator 2 only answers items nobody else did.
    items = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 5])
    annotators = np.array([0, 1, 0, 1, 0, 1, 0, 1, 2, 2])
    labels = np.array([0, 0, 1, 1, 0, 1, 1, 1, 0, 1])
    result = cohen_kappas(items, annotators, labels, n_items=6, n_annotators=3, n_labels=2)
    assert result.shared[0, 2] == result.shared[1, 2] == 0
    assert np.isnan(result.kappa[0, 2]) and np.isnan(result.kappa[1, 2])
    assert result.n_pairs == 1
    expected = cohen_kappa_score([0, 1, 0, 1], [0, 1, 1, 1])
    assert result.mean == pytest.approx(expected, abs=1e-12)


def test_undefined_agreement_is_nan_not_a_number_made_up() -> None:
    # Everyone always says 0: observed and chance agreement are both perfect (0/0).
    same = agreement([0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0], n_items=2, n_annotators=2, n_labels=2)
    assert math.isnan(same.alpha) and math.isnan(same.fleiss_kappa) and math.isnan(same.cohen.mean)
    assert same.cohen.n_pairs == 0
    # No item has two answers.
    lonely = agreement([0, 1, 2], [0, 1, 0], [0, 1, 1], n_items=3, n_annotators=2, n_labels=2)
    assert math.isnan(lonely.alpha) and math.isnan(lonely.fleiss_kappa)
    assert (lonely.n_items, lonely.n_answers) == (0, 0)


def test_perfect_agreement_is_one_and_counts_only_pairable_items() -> None:
    result = agreement(
        [0, 0, 1, 1, 1, 2, 3], [0, 1, 0, 1, 2, 0, 2], [2, 2, 0, 0, 0, 1, 1], n_items=4, n_annotators=3, n_labels=3
    )
    assert result.alpha == pytest.approx(1.0)
    assert result.fleiss_kappa == pytest.approx(1.0)
    assert result.cohen.mean == pytest.approx(1.0)
    assert (result.n_items, result.n_answers) == (2, 5)


def test_an_annotator_answers_an_item_once() -> None:
    with pytest.raises(ValueError, match="only once"):
        agreement([0, 0], [1, 1], [0, 1], n_items=1, n_annotators=2, n_labels=2)
