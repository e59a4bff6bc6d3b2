import numpy as np
import pytest
from numpy.typing import NDArray

from labeling.consensus import dawid_skene, majority_vote, majority_votes, review_selection


def test_majority_with_confidence() -> None:
    result = majority_vote(["a", "b", "a"])
    assert (result.label, result.n_annotations, result.tied) == ("a", 3, False)
    assert result.confidence == pytest.approx(2 / 3)


def test_tie_goes_to_the_first_answered_and_is_flagged() -> None:
    result = majority_vote(["b", "a"])
    assert (result.label, result.tied, result.confidence) == ("b", True, 0.5)


def test_needs_answers() -> None:
    with pytest.raises(ValueError):
        majority_vote([])


def simulated_crowd(
    seed: int, accuracies: list[float], n_items: int = 600, n_labels: int = 3, per_item: int = 3
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Truth and answers: each item answered by ``per_item`` distinct random annotators, annotator
    ``a`` right with probability ``accuracies[a]``, wrong answers uniform over the other labels."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n_items)
    annotators = np.argsort(rng.random((n_items, len(accuracies))), axis=1)[:, :per_item].ravel()
    items = np.repeat(np.arange(n_items), per_item)
    right = rng.random(items.size) < np.asarray(accuracies)[annotators]
    wrong = (truth[items] + rng.integers(1, n_labels, items.size)) % n_labels
    return truth, items, annotators, np.where(right, truth[items], wrong)


def one_coin_confusion(accuracies: list[float], n_labels: int) -> NDArray[np.float64]:
    eye = np.eye(n_labels)
    acc = np.asarray(accuracies)[:, None, None]
    return acc * eye + (1 - acc) / (n_labels - 1) * (1 - eye)


def confusion_against(
    reference: NDArray[np.intp],
    items: NDArray[np.intp],
    annotators: NDArray[np.intp],
    labels: NDArray[np.intp],
    n_annotators: int,
    n_labels: int,
) -> NDArray[np.float64]:
    counts = np.zeros((n_annotators, n_labels, n_labels))
    np.add.at(counts, (annotators, reference[items], labels), 1)
    return counts / np.maximum(counts.sum(axis=2, keepdims=True), 1)


CROWD = [0.95, 0.9, 0.8, 0.7, 0.55, 0.4, 0.25]


def test_majority_votes_agree_with_majority_vote_per_item() -> None:
    rng = np.random.default_rng(3)
    items = np.concatenate([np.arange(40), rng.integers(0, 40, 110)])  # every item answered, some tied
    labels = rng.integers(0, 3, 150)
    names = np.array(["a", "b", "c"])
    votes = majority_votes(items, labels, n_items=41, n_labels=3)
    for item in range(40):
        one = majority_vote(list(names[labels[items == item]]))
        assert (names[votes.labels[item]], votes.tied[item], votes.n_answers[item]) == (
            one.label,
            one.tied,
            one.n_annotations,
        )
        assert votes.confidence[item] == pytest.approx(one.confidence)
    assert votes.tied[:40].sum() >= 5
    assert (votes.labels[40], votes.n_answers[40], votes.confidence[40], votes.tied[40]) == (-1, 0, 0.0, False)


def test_dawid_skene_beats_majority_vote_and_recovers_annotator_confusion() -> None:
    truth, items, annotators, labels = simulated_crowd(0, CROWD)
    n_annotators = len(CROWD)
    result = dawid_skene(items, annotators, labels, n_items=600, n_annotators=n_annotators, n_labels=3)
    votes = majority_votes(items, labels, n_items=600, n_labels=3)
    assert (result.labels == truth).mean() > (votes.labels == truth).mean() + 0.03
    true_confusion = one_coin_confusion(CROWD, 3)
    ours = np.abs(result.confusion - true_confusion).mean()
    from_majority = np.abs(
        confusion_against(votes.labels, items, annotators, labels, n_annotators, 3) - true_confusion
    ).mean()
    assert ours < from_majority / 2
    assert ours < 0.05
    assert np.abs(result.accuracy - CROWD).max() < 0.1
    assert list(np.argsort(-result.accuracy)) == list(range(n_annotators))  # ranks the annotators right
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0)
    np.testing.assert_allclose(result.confusion.sum(axis=2), 1.0)
    assert result.confidence == pytest.approx(result.posteriors.max(axis=1))
    assert (result.annotator_answers.sum(), result.n_answers.sum()) == (1800, 1800)


def test_gold_items_are_clamped_and_unmask_colluding_annotators() -> None:
    # Annotators 0 and 1 always answer 0; annotator 2 is right. Without gold the two agreeing
    # annotators look reliable; 30 gold items show who is.
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 300)
    items, annotators = np.repeat(np.arange(300), 3), np.tile([0, 1, 2], 300)
    labels = np.where(annotators == 2, truth[items], 0)
    common = dict(n_items=300, n_annotators=3, n_labels=3)
    blind = dawid_skene(items, annotators, labels, **common)
    gold = np.arange(30)
    wrong_gold = (truth[gold] + 1) % 3
    informed = dawid_skene(items, annotators, labels, gold_items=gold, gold_labels=truth[gold], **common)
    assert (blind.labels == truth).mean() < 0.5
    assert (informed.labels == truth).mean() > 0.95
    assert informed.accuracy[2] > 0.85 and informed.accuracy[:2].max() < 0.5
    assert informed.converged
    # Clamped: a gold item keeps its known label whatever the answers say.
    contrary = dawid_skene(items, annotators, labels, gold_items=gold, gold_labels=wrong_gold, **common)
    np.testing.assert_array_equal(contrary.labels[gold], wrong_gold)
    np.testing.assert_array_equal(contrary.confidence[gold], 1.0)


def test_converges_and_stops_at_the_iteration_limit() -> None:
    _, items, annotators, labels = simulated_crowd(2, CROWD)
    common = dict(n_items=600, n_annotators=len(CROWD), n_labels=3)
    done = dawid_skene(items, annotators, labels, tol=1e-8, max_iter=1000, **common)
    assert done.converged and 1 < done.iterations < 1000
    longer = dawid_skene(items, annotators, labels, tol=1e-12, max_iter=done.iterations + 200, **common)
    np.testing.assert_allclose(longer.posteriors, done.posteriors, atol=1e-6)
    capped = dawid_skene(items, annotators, labels, max_iter=1, **common)
    assert (capped.iterations, capped.converged) == (1, False)
    assert capped.log_likelihood < done.log_likelihood


def test_smoothing_keeps_sparse_annotators_from_degenerate_matrices() -> None:
    truth, items, annotators, labels = simulated_crowd(4, CROWD[:4], n_items=200)
    # Annotator 4 answered one item; annotator 5 none.
    items = np.append(items, 0)
    annotators = np.append(annotators, 4)
    labels = np.append(labels, (truth[0] + 1) % 3)
    result = dawid_skene(
        items, annotators, labels, n_items=200, n_annotators=6, n_labels=3, smoothing=0.5, diagonal=1.0
    )
    sparse_one = result.confusion[4]
    assert sparse_one.min() > 0.1 and sparse_one.max() < 0.7
    prior = np.full((3, 3), 0.5) + np.eye(3)
    np.testing.assert_allclose(result.confusion[5], prior / prior.sum(axis=1, keepdims=True))
    assert result.annotator_answers[4:].tolist() == [1, 0]
    # An annotator known from one answer barely moves the item it answered.
    without = dawid_skene(items[:-1], annotators[:-1], labels[:-1], n_items=200, n_annotators=6, n_labels=3)
    assert np.abs(result.posteriors[0] - without.posteriors[0]).max() < 0.15


def test_unanswered_items_get_the_class_priors() -> None:
    result = dawid_skene([0, 0, 1], [0, 1, 0], [1, 1, 0], n_items=3, n_annotators=2, n_labels=2)
    np.testing.assert_allclose(result.posteriors[2], result.priors)
    assert result.n_answers.tolist() == [2, 1, 0]


def test_input_is_checked() -> None:
    with pytest.raises(ValueError, match="same length"):
        dawid_skene([0, 1], [0], [0, 1], n_items=2, n_annotators=1, n_labels=2)
    with pytest.raises(ValueError, match="labels must lie"):
        dawid_skene([0], [0], [2], n_items=1, n_annotators=1, n_labels=2)
    with pytest.raises(ValueError, match="one known label"):
        dawid_skene([0], [0], [1], n_items=1, n_annotators=1, n_labels=2, gold_items=[0, 0], gold_labels=[0, 1])


def test_review_selects_ties_and_low_confidence_least_confident_first() -> None:
    # item 0: 2-1 vote (0.67); item 1: tie; item 2: unanimous; item 3: three-way split; item 4: no answers.
    items = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    labels = np.array([0, 0, 1, 1, 0, 2, 2, 2, 0, 1, 2])
    votes = majority_votes(items, labels, n_items=5, n_labels=3)
    picked = review_selection(confidence=votes.confidence, threshold=0.7, tied=votes.tied, n_answers=votes.n_answers)
    assert picked.items.tolist() == [3, 1, 0]
    assert picked.tied.tolist() == [True, True, False]
    assert picked.low_confidence.tolist() == [True, True, True]
    ties_only = review_selection(confidence=votes.confidence, threshold=0.5, tied=votes.tied, n_answers=votes.n_answers)
    assert ties_only.items.tolist() == [3, 1]
    assert ties_only.low_confidence.tolist() == [True, False]
    # Dawid-Skene gives no ties, only confidence.
    ds = dawid_skene(items, np.arange(items.size) % 3, labels, n_items=5, n_annotators=3, n_labels=3)
    low = review_selection(confidence=ds.confidence, threshold=0.9, n_answers=ds.n_answers)
    assert 4 not in low.items.tolist() and 2 not in low.items.tolist()
    assert np.all(np.diff(ds.confidence[low.items]) >= 0)
