import pytest

from labeling.consensus import majority_vote


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
