"""file_search's attribute filters: the API's ComparisonFilter and CompoundFilter, strict about types, and a
malformed filter named by its path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.server.tools.file_search.filters import FilterError, check_filters, matches

FILE = {"author": "ada", "year": 2024, "score": 0.5, "draft": False, "date": "2024-05-01"}


@pytest.mark.parametrize(("flt", "expected"), [
    ({"type": "eq", "key": "author", "value": "ada"}, True),
    ({"type": "eq", "key": "author", "value": "Ada"}, False),
    ({"type": "ne", "key": "author", "value": "bob"}, True),
    ({"type": "eq", "key": "year", "value": 2024.0}, True),
    ({"type": "gt", "key": "year", "value": 2023}, True),
    ({"type": "gt", "key": "year", "value": 2024}, False),
    ({"type": "gte", "key": "year", "value": 2024}, True),
    ({"type": "lt", "key": "score", "value": 0.75}, True),
    ({"type": "lte", "key": "score", "value": 0.25}, False),
    ({"type": "lt", "key": "date", "value": "2024-06-01"}, True),  # ISO dates order as strings
    ({"type": "eq", "key": "draft", "value": False}, True),
    ({"type": "in", "key": "author", "value": ["bob", "ada"]}, True),
    ({"type": "in", "key": "year", "value": [2023, 2025]}, False),
    ({"type": "nin", "key": "author", "value": ["bob"]}, True),
    ({"type": "nin", "key": "year", "value": [2024]}, False),
])
def test_comparisons(flt: dict[str, Any], expected: bool) -> None:
    check_filters(flt)
    assert matches(flt, FILE) is expected


@pytest.mark.parametrize(("flt", "expected"), [
    ({"type": "eq", "key": "year", "value": "2024"}, False),  # a string never equals a number
    ({"type": "ne", "key": "year", "value": "2024"}, True),
    ({"type": "eq", "key": "draft", "value": 0}, False),  # nor is a boolean a number
    ({"type": "in", "key": "draft", "value": [0, 1]}, False),
    ({"type": "gt", "key": "author", "value": 3}, False),  # ordering only compares like with like
    ({"type": "lt", "key": "year", "value": "9999"}, False),
    ({"type": "gte", "key": "draft", "value": False}, False),
])
def test_types_are_strict(flt: dict[str, Any], expected: bool) -> None:
    assert matches(flt, FILE) is expected


@pytest.mark.parametrize(("kind", "expected"), [("eq", False), ("ne", True), ("gt", False), ("lte", False),
                                                ("in", False), ("nin", True)])
def test_a_missing_attribute_matches_ne_and_nin_only(kind: str, expected: bool) -> None:
    value: Any = ["x"] if kind in ("in", "nin") else "x"
    assert matches({"type": kind, "key": "absent", "value": value}, FILE) is expected
    assert matches({"type": kind, "key": "absent", "value": value}, {}) is expected


def test_compound_filters_nest() -> None:
    flt = {"type": "and", "filters": [
        {"type": "eq", "key": "author", "value": "ada"},
        {"type": "or", "filters": [{"type": "lt", "key": "year", "value": 2000},
                                   {"type": "eq", "key": "draft", "value": False}]},
    ]}
    assert matches(flt, FILE)
    assert not matches(flt, {**FILE, "draft": True})
    assert matches({"type": "and", "filters": []}, FILE)
    assert not matches({"type": "or", "filters": []}, FILE)


def test_no_filter_matches_everything() -> None:
    assert matches(None, FILE)
    assert matches(None, {})


@pytest.mark.parametrize(("flt", "param", "reason"), [
    ("eq", "filters", "expected an object (a comparison or compound filter)"),
    ({}, "filters.type", "is required"),
    ({"type": "like", "key": "a", "value": "b"}, "filters.type",
     "expected one of eq, ne, gt, gte, lt, lte, in, nin, and, or, got 'like'"),
    ({"type": "eq", "value": "b"}, "filters.key", "is required"),
    ({"type": "eq", "key": 3, "value": "b"}, "filters.key", "expected a string"),
    ({"type": "eq", "key": "a"}, "filters.value", "is required"),
    ({"type": "eq", "key": "a", "value": None}, "filters.value", "`eq` compares with a string, a number or a boolean"),
    ({"type": "eq", "key": "a", "value": ["x"]}, "filters.value", "`eq` compares with a string, a number or a boolean"),
    ({"type": "gt", "key": "a", "value": {"x": 1}}, "filters.value",
     "`gt` compares with a string, a number or a boolean"),
    ({"type": "eq", "key": "a", "value": float("nan")}, "filters.value",
     "`eq` compares with a string, a number or a boolean"),
    ({"type": "in", "key": "a", "value": "x"}, "filters.value", "`in` compares with an array of strings or numbers"),
    ({"type": "nin", "key": "a", "value": ["x", True]}, "filters.value[1]", "expected a string or a number"),
    ({"type": "eq", "key": "a", "value": "b", "extra": 1}, "filters.extra", "unknown field for a `eq` filter"),
    ({"type": "and"}, "filters.filters", "is required"),
    ({"type": "or", "filters": {"type": "eq"}}, "filters.filters", "expected an array of filters"),
    ({"type": "and", "filters": [{"type": "eq", "key": "a", "value": 1}, {"type": "or", "filters": [{"type": "x"}]}]},
     "filters.filters[1].filters[0].type", "expected one of eq, ne, gt, gte, lt, lte, in, nin, and, or, got 'x'"),
    ({"type": "and", "filters": [], "key": "a"}, "filters.key", "unknown field for a `and` filter"),
])
def test_malformed_filters_name_the_part(flt: Any, param: str, reason: str) -> None:
    for check in (check_filters, lambda f: matches(f, FILE)):
        with pytest.raises(FilterError) as caught:
            check(flt)
        assert isinstance(caught.value, ValueError)
        assert caught.value.param == param
        assert str(caught.value) == f"Invalid '{param}': {reason}"


def test_a_malformed_branch_is_found_even_when_an_earlier_one_decides() -> None:
    flt = {"type": "or", "filters": [{"type": "eq", "key": "author", "value": "ada"}, {"type": "bad"}]}
    with pytest.raises(FilterError, match=r"filters\.filters\[1\]\.type"):
        matches(flt, FILE)


def test_nesting_is_bounded() -> None:
    flt: dict[str, Any] = {"type": "eq", "key": "a", "value": 1}
    for _ in range(5000):
        flt = {"type": "and", "filters": [flt]}
    with pytest.raises(FilterError, match="nested at most 16 deep"):
        check_filters(flt)


_leaf = st.fixed_dictionaries({
    "type": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "zz"]),
    "key": st.sampled_from(["author", "year", "draft", "absent"]),
    "value": st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.booleans(), st.none(),
                       st.lists(st.one_of(st.integers(), st.text(max_size=3), st.booleans()), max_size=3)),
})
_filters = st.recursive(_leaf, lambda inner: st.fixed_dictionaries(
    {"type": st.sampled_from(["and", "or", "xor"]), "filters": st.lists(inner, max_size=3)}), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(flt=st.one_of(_filters, st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), st.integers()))
def test_any_filter_is_a_bool_or_a_filter_error(flt: Any) -> None:
    try:
        assert matches(flt, FILE) in (True, False)
    except FilterError as exc:
        assert exc.param.startswith("filters")
