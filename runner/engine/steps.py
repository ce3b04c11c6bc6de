"""A run's steps, listed once after its turn for what the transcript shows of the built-in tools (the searches
of file_search, the code runs of code_interpreter), as JSON rather than the SDK's types, so that a backend's
additions (the `queries` each search ran, which the API itself does not show) are kept."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

# asks the run steps for each search result's text (without it the API leaves `content` out)
SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
STEP_PAGES = 20  # pages of 100 steps read at most: a run's tool calls are a few steps, this only bounds a loop


async def run_steps(threads: Any, run: Any, *, search_content: bool = True) -> list[dict[str, Any]]:
    """Every step of `run`, in order, as JSON data (following the pages); with `search_content`, with the text of
    each file_search result."""
    include = {"include": [SEARCH_CONTENT]} if search_content else {}
    found: list[dict[str, Any]] = []
    after: dict[str, str] = {}
    for _ in range(STEP_PAGES):
        response = await threads.runs.steps.with_raw_response.list(
            run.id, thread_id=run.thread_id, **include, order="asc", limit=100, **after)
        page = json.loads(response.http_response.content)
        steps = page.get("data") if isinstance(page, dict) else None
        if not isinstance(steps, list):
            raise ValueError("the run steps came back without a `data` list")
        found.extend(steps)
        if not page.get("has_more") or not steps:
            break
        after = {"after": str(page.get("last_id") or steps[-1].get("id"))}
    return found


def tool_calls_in(steps: list[Any], kind: str) -> list[dict[str, Any]]:
    """The tool calls of type `kind` (`file_search`, `code_interpreter`) of `tool_calls` steps, in order; what is
    not shaped as the API shapes it is left out."""
    out = []
    for step in steps:
        details = step.get("step_details") if isinstance(step, dict) else None
        if not isinstance(details, dict) or details.get("type") != "tool_calls":
            continue
        for call in details.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("type") == kind:
                out.append(call)
    return out


def annotations_in(messages: Sequence[Any], kind: str) -> Iterator[Any]:
    """The annotations of type `kind` (`file_citation`, `file_path`) of the messages' text parts (SDK Message
    objects), in order: what the built-in tools left in the reply."""
    for message in messages:
        for part in getattr(message, "content", None) or []:
            if getattr(part, "type", None) != "text":
                continue
            for note in getattr(part.text, "annotations", None) or []:
                if getattr(note, "type", None) == kind:
                    yield note


def item_annotations(items: Sequence[dict[str, Any]], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The annotations of type `kind` (`file_citation`, `container_file_citation`) of the message items of a turn's
    responses (as JSON data), in order, each with the text of its part (where its indexes point)."""
    for item in items:
        if item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            text = str(part.get("text") or "")
            for note in part.get("annotations") or []:
                if isinstance(note, dict) and note.get("type") == kind:
                    yield text, note
