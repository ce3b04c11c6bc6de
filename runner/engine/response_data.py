"""A response as the Responses pipeline reads it: plain JSON data, checked for the fields a transcript takes from
it, so that a backend's malformed answer fails its turn naming the field (MalformedResponse), never the batch.

The SDK builds responses leniently (it validates nothing), and a server may send anything: a field of the wrong
type, an item without its type, a terminal event of a response still `in_progress`. Item types this pipeline does
not know (reasoning, web search, ...) are kept and passed over, as new ones may come; lone surrogates, which no
transcript could be written with, become U+FFFD.
"""

from __future__ import annotations

import re
from typing import Any

# the statuses a response may end with; `in_progress` and `queued` are not an end
ENDED = ("completed", "incomplete", "failed", "cancelled")
_SURROGATE = re.compile("[\ud800-\udfff]")


class MalformedResponse(Exception):
    """A backend's response that lacks a field the transcript takes, or has it of the wrong type."""


def response_data(response: Any) -> dict[str, Any]:
    """The response (an SDK object, or the JSON of a stream's end event) as checked JSON data."""
    if hasattr(response, "model_dump"):
        response = response.model_dump(mode="json", warnings=False)
    data = _clean(response)
    if not isinstance(data, dict):
        raise MalformedResponse(f"the backend's response is not an object: {_kind(data)}")
    _expect(data, "id", str, "response")
    status = data.get("status")
    if status not in ENDED:
        raise MalformedResponse(f"the backend's response ended with status {status!r}, which is no end "
                                f"({', '.join(ENDED)})")
    output = _expect(data, "output", list, "response")
    for i, item in enumerate(output):
        _item(item, f"output[{i}]")
    usage = _expect(data, "usage", dict, "response", optional=True)
    if usage is not None:
        for key in ("input_tokens", "output_tokens"):
            _expect(usage, key, int, "usage")
    error = _expect(data, "error", dict, "response", optional=True)
    if error is not None:
        _expect(error, "message", str, "error")
    _expect(data, "incomplete_details", dict, "response", optional=True)
    return data


def message_text(item: dict[str, Any]) -> str:
    """The output text of a (checked) message item."""
    return "".join(part["text"] for part in item["content"] if part.get("type") == "output_text")


def _item(item: Any, where: str) -> None:
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise MalformedResponse(f"the backend's response is malformed: {where} is {_kind(item)}, not an item "
                                "with a type")
    if item["type"] == "message":
        for j, part in enumerate(_expect(item, "content", list, where)):
            if not isinstance(part, dict):
                raise MalformedResponse(f"the backend's response is malformed: {where}.content[{j}] is "
                                        f"{_kind(part)}, not a content part")
            if part.get("type") == "output_text":
                _expect(part, "text", str, f"{where}.content[{j}]")
                _expect(part, "annotations", list, f"{where}.content[{j}]", optional=True)
    elif item["type"] == "function_call":
        for key in ("call_id", "name", "arguments"):
            _expect(item, key, str, where)


def _expect(data: dict[str, Any], key: str, kind: type, where: str, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedResponse(f"the backend's response is malformed: {where}.{key} is {_kind(value)}, "
                                f"not {_NAMES[kind]}")
    return value


_NAMES = {str: "a string", list: "a list", dict: "an object", int: "an integer"}


def _kind(value: Any) -> str:
    if value is None:
        return "missing (or null)"
    return {str: "a string", list: "a list", dict: "an object", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _clean(value: Any) -> Any:
    """`value` with every lone surrogate of its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value
