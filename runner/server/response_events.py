"""A response's server-sent events, in the official order and shapes: `response.created` and
`response.in_progress` as it starts; per output item `output_item.added`, its content part (with its
annotations), its function call's arguments or its built-in call's phases, `output_item.done`; then
`response.completed`, `.incomplete` or `.failed`.

The providers answer whole, so each text and each call's arguments come as one delta. The events carry no
`sequence_number`: the stream numbers them as it sends them (`numbered`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def start(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a response as it starts (`in_progress`, no output yet)."""
    return [{"type": "response.created", "response": response},
            {"type": "response.in_progress", "response": response}]


def _item_events(index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    at = {"output_index": index, "item_id": item["id"]}
    if item["type"] == "function_call":
        yield {"type": "response.output_item.added", "output_index": index,
               "item": {**item, "arguments": "", "status": "in_progress"}}
        yield {"type": "response.function_call_arguments.delta", **at, "delta": item["arguments"]}
        yield {"type": "response.function_call_arguments.done", **at, "name": item["name"],
               "arguments": item["arguments"]}
    elif item["type"] in ("file_search_call", "code_interpreter_call"):
        yield from _builtin_events(index, item)
        return
    else:  # an assistant message with one output_text part
        yield {"type": "response.output_item.added", "output_index": index,
               "item": {**item, "content": [], "status": "in_progress"}}
        for content_index, part in enumerate(item["content"]):
            place = {**at, "content_index": content_index}
            yield {"type": "response.content_part.added", **place, "part": {**part, "text": ""}}
            yield {"type": "response.output_text.delta", **place, "delta": part["text"], "logprobs": []}
            for annotation_index, annotation in enumerate(part.get("annotations") or []):
                yield {"type": "response.output_text.annotation.added", **place,
                       "annotation_index": annotation_index, "annotation": annotation}
            yield {"type": "response.output_text.done", **place, "text": part["text"], "logprobs": []}
            yield {"type": "response.content_part.done", **place, "part": part}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def _builtin_events(index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A built-in call's events: a search's `in_progress`, `searching`, `completed`; a code call's `in_progress`,
    its code (delta, done), `interpreting`, `completed`."""
    at = {"output_index": index, "item_id": item["id"]}
    if item["type"] == "file_search_call":
        yield {"type": "response.output_item.added", "output_index": index,
               "item": {**item, "status": "in_progress", "results": None}}
        for phase in ("in_progress", "searching", "completed"):
            yield {"type": f"response.file_search_call.{phase}", **at}
    else:
        yield {"type": "response.output_item.added", "output_index": index,
               "item": {**item, "status": "in_progress", "code": "", "outputs": None}}
        yield {"type": "response.code_interpreter_call.in_progress", **at}
        yield {"type": "response.code_interpreter_call_code.delta", **at, "delta": item["code"]}
        yield {"type": "response.code_interpreter_call_code.done", **at, "code": item["code"]}
        yield {"type": "response.code_interpreter_call.interpreting", **at}
        yield {"type": "response.code_interpreter_call.completed", **at}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def finish(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a finished response: its output items, then its end (`response.<status>`)."""
    events = [event for index, item in enumerate(response["output"]) for event in _item_events(index, item)]
    events.append({"type": f"response.{response['status']}", "response": response})
    return events


def numbered(events: Iterable[dict[str, Any]], first: int = 0) -> Iterator[dict[str, Any]]:
    """The events with their `sequence_number`, counting from `first`."""
    for number, event in enumerate(events, first):
        yield {**event, "sequence_number": number}


def sse(event: dict[str, Any]) -> bytes:
    """One event on the wire."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def as_started(response: dict[str, Any]) -> dict[str, Any]:
    """A finished response as it was when it started: `in_progress`, with no output, usage or end."""
    started = {**response, "status": "in_progress", "output": [], "error": None, "incomplete_details": None,
               "completed_at": None}
    started.pop("usage", None)
    return started


def replay(response: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event of a stored response, numbered (what `GET /responses/{id}?stream=true` sends)."""
    return list(numbered([*start(as_started(response)), *finish(response)]))
