from hypothesis import given
from hypothesis import strategies as st

from feedback import sethash

pairs = st.sets(st.tuples(st.text(max_size=20), st.sampled_from(["a", "b", "c"])), max_size=30)


@given(pairs)
def test_order_does_not_matter(items: set[tuple[str, str]]) -> None:
    assert sethash.of_pairs(items) == sethash.of_pairs(sorted(items, reverse=True))


@given(pairs, pairs)
def test_child_hash_follows_from_parent_and_diff(parent: set[tuple[str, str]], added: set[tuple[str, str]]) -> None:
    added -= parent
    removed = set(list(parent)[: len(parent) // 2])
    child = (parent | added) - removed
    assert sethash.combine(sethash.of_pairs(parent), added=added, removed=removed) == sethash.of_pairs(child)


def test_label_is_part_of_the_pair() -> None:
    assert sethash.of_pairs([("x", "a")]) != sethash.of_pairs([("x", "b")])
    assert sethash.of_pairs([("xa", "")]) != sethash.of_pairs([("x", "a")])
    assert sethash.from_hex(sethash.to_hex(12345)) == 12345
