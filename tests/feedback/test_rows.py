"""feedback/rows.py: the fast check accepts exactly what the full check accepts, and builds the same row."""

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback.rows import CheckedBatch, ValidRow, check_batch, check_item

SCHEMA = {"x": "numeric", "colour": "categorical", "note": "text"}
LABELS = ["cat", "dog", "bird"]
LABEL_INDEX = {label: i for i, label in enumerate(LABELS)}


def reference(items: list[Any]) -> CheckedBatch:
    """What check_batch must return: check_item, the full check, on every item."""
    results = [check_item(i, item, SCHEMA, LABEL_INDEX) for i, item in enumerate(items)]
    return CheckedBatch(
        valid=[r for r in results if isinstance(r, ValidRow)],
        rejected=[r for r in results if not isinstance(r, ValidRow)],
    )


def item(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "external_id": "a",
        "data": {"x": 1.5, "colour": "red", "note": "hi"},
        "prediction": {"probabilities": {"cat": 0.7, "dog": 0.2, "bird": 0.1}},
        "model_version": "v1",
        "observed_at": "2026-11-01T12:00:00+01:00",
    }
    row.update(overrides)
    return {k: v for k, v in row.items() if v is not ...}


# Values that sit on either side of every check: exact and subclassed types, bools, non-finite
# floats, out-of-range probabilities, bad and naive timestamps, over-long strings.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.0005, 1.5, -0.1, math.nan, math.inf, -math.inf, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "red",
            "cat",
            "dog",
            "bird",
            "x" * 201,
            "x" * 255,
            "x" * 256,
            "2026-11-01T12:00:00",
            "2026-11-01T12:00:00Z",
        ]
    ),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)
probability = st.one_of(
    st.sampled_from([0.0, 0.1, 0.2, 0.25, 1 / 3, 0.5, 0.7, 1.0, 1, 0, True, -0.01, 1.0005, 1.01, math.nan]),
    st.floats(0, 1),
    scalars,
)
probabilities = st.one_of(
    st.dictionaries(st.sampled_from([*LABELS, "fish", ""]), probability, max_size=4),
    scalars,
)
prediction = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "label": st.one_of(st.sampled_from([*LABELS, "fish", None]), scalars),
            "probabilities": probabilities,
            "score": scalars,
        },
    ),
    scalars,
)
data = st.one_of(
    st.dictionaries(st.sampled_from([*SCHEMA, "extra"]), scalars, max_size=4),
    st.fixed_dictionaries(
        {"x": st.one_of(st.integers(), st.floats(), st.none()), "colour": st.text(max_size=3), "note": st.text()}
    ),
    scalars,
)
items = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "external_id": st.one_of(st.sampled_from(["a", "b", "x" * 255, "x" * 256, ""]), scalars),
            "data": data,
            "prediction": prediction,
            "model_version": st.one_of(st.sampled_from(["v1", "", "m" * 200, "m" * 201]), scalars),
            "observed_at": st.one_of(
                st.sampled_from(
                    [
                        "2026-11-01T12:00:00+00:00",
                        "2026-11-01T12:00:00.123456-05:30",
                        "2026-11-01 12:00:00Z",
                        "2026-11-01T12:00:00",
                        "2026-13-01T12:00:00+00:00",
                        "yesterday",
                    ]
                ),
                scalars,
            ),
            "label": st.one_of(st.sampled_from([*LABELS, "fish"]), scalars),
            "labels": scalars,
        },
    ),
    scalars,
)


valid_data = st.fixed_dictionaries(
    {},
    optional={
        "x": st.one_of(st.none(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False)),
        "colour": st.one_of(st.none(), st.text(max_size=3)),
        "note": st.one_of(st.none(), st.text(max_size=8)),
    },
)
valid_items = st.fixed_dictionaries(
    {"external_id": st.text(min_size=1, max_size=255), "data": valid_data},
    optional={
        "prediction": st.fixed_dictionaries(
            {},
            optional={
                "label": st.sampled_from([*LABELS, None]),
                "probabilities": st.dictionaries(st.sampled_from(LABELS), st.floats(0, 1), min_size=1),
            },
        ),
        "model_version": st.one_of(st.none(), st.text(max_size=200)),
        "observed_at": st.sampled_from(["2026-11-01T12:00:00+00:00", "2026-11-01T12:00:00.5-05:30", None]),
        "label": st.sampled_from([*LABELS, None]),
    },
)


# Per place, the values just past each of its checks (with every other kind of value besides).
EDGES: dict[str, st.SearchStrategy[Any]] = {
    "external_id": st.sampled_from(["", "x" * 256, 7, None, True]),
    "data.x": st.sampled_from([True, False, math.nan, math.inf, "1", [1]]),
    "data.colour": st.sampled_from([1, 1.5, True, ["red"], {"a": 1}]),
    "prediction.label": st.sampled_from(["fish", "", 1, True, ["cat"]]),
    "prediction.probabilities": st.sampled_from(
        [{}, {"cat": 1.0005}, {"cat": 1.0015}, {"cat": -0.0}, {"cat": 0}, {"fish": 0.5}, {"cat": True}, [0.5]]
    ),
    "model_version": st.sampled_from(["m" * 201, 1, True]),
    "observed_at": st.sampled_from(["2026-11-01T12:00:00", "2026-11-01", "soon", "", 1_700_000_000]),
    "label": st.sampled_from(["fish", "", 1, True]),
}


@st.composite
def near_valid_items(draw: st.DrawFn) -> dict[str, Any]:
    """A valid item with zero to two things broken, so that every single check gets exercised."""
    row: dict[str, Any] = dict(draw(valid_items))
    places = [*EDGES, "data", "data.extra", "prediction", "prediction.extra", "extra"]
    for _ in range(draw(st.integers(0, 2))):
        path = draw(st.sampled_from(places))
        top, _, sub = path.partition(".")
        value = draw(st.one_of(EDGES[path], scalars) if path in EDGES else scalars)
        if not sub:
            row[top] = value
        elif isinstance(inner := row.get(top), dict):
            row[top] = {**inner, sub: value}
        else:
            row[top] = {sub: value}
    return row


@settings(max_examples=600, deadline=None)
@given(st.lists(items, max_size=6))
def test_check_batch_matches_the_full_check_item_by_item(batch: list[Any]) -> None:
    assert check_batch(batch, SCHEMA, LABELS) == reference(batch)


@settings(max_examples=1500, deadline=None)
@given(st.lists(near_valid_items(), min_size=1, max_size=4))
def test_nearly_valid_items_match_the_full_check(batch: list[Any]) -> None:
    assert check_batch(batch, SCHEMA, LABELS) == reference(batch)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(LABELS), st.floats(0, 1), min_size=1),
    st.sampled_from(["v1", None]),
    st.sampled_from([None, "cat"]),
)
def test_valid_items_with_any_distribution_match(
    distribution: dict[str, float], version: str | None, label: str | None
) -> None:
    batch = [item(prediction={"probabilities": distribution}, model_version=version, label=label)]
    assert check_batch(batch, SCHEMA, LABELS) == reference(batch)


def test_a_valid_row_is_built_as_stored() -> None:
    (row,) = check_batch([item(data={"note": "hi", "x": 2})], SCHEMA, LABELS).valid
    assert row.data == {"x": 2, "colour": None, "note": "hi"}
    assert list(row.data) == list(SCHEMA)  # schema order, missing fields null
    assert row.prediction_label == "cat"  # the likeliest, when production names none
    assert row.probabilities == pytest.approx([0.7, 0.2, 0.1])
    assert row.observed_at is not None and row.observed_at.utcoffset() is not None
    assert row.model_version == "v1"


def test_partial_probabilities_spread_the_rest_over_the_unlisted_labels() -> None:
    (row,) = check_batch([item(prediction={"probabilities": {"dog": 0.5}})], SCHEMA, LABELS).valid
    assert row.probabilities == pytest.approx([0.25, 0.5, 0.25])
    assert row.prediction_label == "dog"


def test_ties_go_to_the_first_label() -> None:
    (row,) = check_batch([item(prediction={"probabilities": {"bird": 0.5, "dog": 0.5}})], SCHEMA, LABELS).valid
    assert row.prediction_label == "dog"


def test_rejections_keep_their_index_and_valid_rows_their_order() -> None:
    batch = [
        item(external_id="ok1"),
        item(external_id="bad", data={"x": "not a number"}),
        item(external_id="ok2"),
        item(external_id="nan", data={"x": math.nan}),
        item(external_id="flag", data={"x": True}),
        "not an object",
    ]
    checked = check_batch(batch, SCHEMA, LABELS)
    assert [row.external_id for row in checked.valid] == ["ok1", "ok2"]
    assert [(r["index"], r["external_id"]) for r in checked.rejected] == [
        (1, "bad"),
        (3, "nan"),
        (4, "flag"),
        (5, None),
    ]
    assert checked.rejected[0]["errors"] == {"data.x": "numeric field must be a number"}
    assert checked.rejected[1]["errors"] == {"data.x": "numeric field must be a finite number"}


def test_unusual_but_valid_types_take_the_full_check() -> None:
    class Label(str):
        pass

    class Amount(float):
        pass

    batch = [item(data={"x": Amount(2.5), "colour": Label("red")}, label=Label("cat"))]
    checked = check_batch(batch, SCHEMA, LABELS)
    assert checked == reference(batch)
    assert [row.label for row in checked.valid] == ["cat"]
