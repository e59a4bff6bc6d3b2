"""Merging several answers on one sample into one label. Pure: no ORM."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Consensus:
    label: str
    confidence: float  # share of the answers that agree with ``label``
    n_annotations: int
    tied: bool  # another label had as many votes


def majority_vote(answers: Sequence[str]) -> Consensus:
    """The most frequent answer; a tie goes to the label answered first among the tied ones."""
    if not answers:
        raise ValueError("majority_vote needs at least one answer")
    counts = Counter(answers)
    top = max(counts.values())
    tied_labels = {label for label, n in counts.items() if n == top}
    winner = next(label for label in answers if label in tied_labels)
    return Consensus(label=winner, confidence=top / len(answers), n_annotations=len(answers), tied=len(tied_labels) > 1)
