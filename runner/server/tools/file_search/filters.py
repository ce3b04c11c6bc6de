"""The API's attribute filters: ComparisonFilter (`eq ne gt gte lt lte in nin`) and CompoundFilter (`and`/`or`,
nested), checked for shape and evaluated against a vector store file's `attributes`.

Comparisons are strict about types, as JSON is: a string never equals a number, a boolean is not 1, and the
ordering operators compare two numbers or two strings (ISO dates order as strings) and are false otherwise. A file
without the key matches `ne` and `nin` only. A malformed filter raises FilterError (a ValueError) whose `param` is
the path of the offending part, e.g. `filters.filters[1].type`, and whose message names it.
"""

from __future__ import annotations

import math
from typing import Any

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")
MAX_DEPTH = 16  # nesting deeper than any real filter: a hostile one must be a 400, not a RecursionError

Attributes = dict[str, str | float | bool]


class FilterError(ValueError):
    """A malformed filter; `param` is the path of the part at fault (`filters.filters[0].value`)."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"Invalid '{param}': {reason}")
        self.param = param
        self.reason = reason


def check_filters(filters: Any, param: str = "filters") -> None:
    """Raise FilterError (a ValueError naming the path) unless `filters` is a well-formed ComparisonFilter or
    CompoundFilter."""
    _check(filters, param, 0)


def matches(filters: dict[str, Any] | None, attributes: Attributes) -> bool:
    """Whether a file with these attributes passes the filter (`None`: every file). FilterError when malformed."""
    if filters is None:
        return True
    check_filters(filters)
    return _evaluate(filters, attributes or {})


def _check(node: Any, param: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FilterError(param, f"filters may be nested at most {MAX_DEPTH} deep")
    if not isinstance(node, dict):
        raise FilterError(param, "expected an object (a comparison or compound filter)")
    kind = node.get("type")
    if not isinstance(kind, str) or kind not in COMPARISONS + COMPOUNDS:
        raise FilterError(f"{param}.type", f"expected one of {', '.join(COMPARISONS + COMPOUNDS)}, got {kind!r}"
                          if "type" in node else "is required")
    if kind in COMPOUNDS:
        _only(node, ("type", "filters"), param)
        children = node.get("filters")
        if not isinstance(children, list):
            raise FilterError(f"{param}.filters", "expected an array of filters"
                              if "filters" in node else "is required")
        for i, child in enumerate(children):
            _check(child, f"{param}.filters[{i}]", depth + 1)
        return
    _only(node, ("type", "key", "value"), param)
    if "key" not in node:
        raise FilterError(f"{param}.key", "is required")
    if not isinstance(node["key"], str):
        raise FilterError(f"{param}.key", "expected a string")
    if "value" not in node:
        raise FilterError(f"{param}.value", "is required")
    value = node["value"]
    if kind in ("in", "nin"):
        if not isinstance(value, list):
            raise FilterError(f"{param}.value", f"`{kind}` compares with an array of strings or numbers")
        for i, item in enumerate(value):
            if not _scalar(item) or isinstance(item, bool):
                raise FilterError(f"{param}.value[{i}]", "expected a string or a number")
    elif not _scalar(value):
        raise FilterError(f"{param}.value", f"`{kind}` compares with a string, a number or a boolean")


def _only(node: dict[str, Any], allowed: tuple[str, ...], param: str) -> None:
    extra = sorted(set(node) - set(allowed))
    if extra:
        raise FilterError(f"{param}.{extra[0]}", f"unknown field for a `{node['type']}` filter")


def _scalar(value: Any) -> bool:
    if isinstance(value, bool | str):
        return True
    return isinstance(value, int | float) and math.isfinite(value)


def _evaluate(node: dict[str, Any], attributes: Attributes) -> bool:
    kind = node["type"]
    if kind == "and":
        return all(_evaluate(child, attributes) for child in node["filters"])
    if kind == "or":
        return any(_evaluate(child, attributes) for child in node["filters"])
    key, value = node["key"], node["value"]
    if key not in attributes:
        return kind in ("ne", "nin")
    actual = attributes[key]
    if kind in ("in", "nin"):
        return any(_same(actual, item) for item in value) == (kind == "in")
    if kind == "eq":
        return _same(actual, value)
    if kind == "ne":
        return not _same(actual, value)
    if not _comparable(actual, value):
        return False
    if kind == "gt":
        return actual > value  # type: ignore[operator]
    if kind == "gte":
        return actual >= value  # type: ignore[operator]
    if kind == "lt":
        return actual < value  # type: ignore[operator]
    return actual <= value  # type: ignore[operator]


def _same(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: 1 == 1.0, but True is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


def _comparable(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, str) and isinstance(b, str):
        return True
    return isinstance(a, int | float) and isinstance(b, int | float)
