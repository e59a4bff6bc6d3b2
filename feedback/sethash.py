"""An order-independent hash of a set of (external_id, label) pairs. Pure.

The hash is the sum, modulo 2**256, of SHA-256 of each pair. Two versions with the same pairs have
the same hash whatever order they were stored or cut in, and a child's hash is its parent's plus
the added pairs minus the removed ones, so cutting a version costs O(changes), not O(set).
(A sum of a collision-resistant hash per element is the "AdHash" multiset hash of Bellare and
Micciancio; pairs are unique by external_id, so the multiset is a set.)
"""

import hashlib
from collections.abc import Iterable

MODULUS = 2**256
EMPTY = 0


def pair_digest(external_id: str, label: str) -> int:
    # \x1f (unit separator) cannot be confused with characters of either part.
    return int.from_bytes(hashlib.sha256(f"{external_id}\x1f{label}".encode()).digest(), "big")


def combine(current: int, added: Iterable[tuple[str, str]] = (), removed: Iterable[tuple[str, str]] = ()) -> int:
    value = current
    for external_id, label in added:
        value = (value + pair_digest(external_id, label)) % MODULUS
    for external_id, label in removed:
        value = (value - pair_digest(external_id, label)) % MODULUS
    return value


def of_pairs(pairs: Iterable[tuple[str, str]]) -> int:
    return combine(EMPTY, added=pairs)


def to_hex(value: int) -> str:
    return f"{value:064x}"


def from_hex(text: str) -> int:
    return int(text, 16)
