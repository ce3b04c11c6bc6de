"""What a turn's knowledge retrieval did: its run's file searches, read from the run's steps (runner/engine/steps.py)
or its responses' `file_search_call` items, and the files its reply cites, read from the `file_citation`
annotations of its messages or its responses' message items."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from runner.engine.steps import SEARCH_CONTENT, annotations_in, item_annotations, run_steps, tool_calls_in
from runner.report.transcript import SearchRecord

__all__ = ["SEARCH_CONTENT", "citations_in", "citations_in_items", "names_found", "run_searches", "search_record",
           "searches_in", "searches_in_items"]
_MARKER = re.compile(r"【[^】\n]{0,300}】")  # a citation marker as the reply copies it, where an annotation points


async def run_searches(threads: Any, run: Any) -> list[SearchRecord]:
    """Every file_search call of `run`, in order, with its queries and results (with their text)."""
    return searches_in(await run_steps(threads, run))


def searches_in(steps: Sequence[Any]) -> list[SearchRecord]:
    """The file_search calls of run steps (as JSON data), in order."""
    return [search_record(call.get("file_search")) for call in tool_calls_in(list(steps), "file_search")]


def search_record(file_search: Any) -> SearchRecord:
    """One file_search call's `file_search` object as the transcript keeps it: its queries (a backend
    extension: [] when absent) and each result's file, score and text."""
    data = file_search if isinstance(file_search, dict) else {}
    queries = [q for q in data.get("queries") or [] if isinstance(q, str)]
    results = []
    for result in data.get("results") or []:
        if not isinstance(result, dict):
            continue
        parts = result.get("content") or []
        text = "\n".join(str(p.get("text") or "") for p in parts if isinstance(p, dict) and p.get("type") == "text")
        results.append({"file_id": result.get("file_id"), "file_name": result.get("file_name"),
                        "score": result.get("score"), "text": text})
    return SearchRecord(queries=queries, results=results)


def citations_in(messages: Sequence[Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The `file_citation` annotations of the messages' text (SDK Message objects), each with the cited file's
    name when `names` (file id -> name: the files the runner uploaded, those the searches found) knows it."""
    out = []
    for note in annotations_in(messages, "file_citation"):
        file_id = getattr(getattr(note, "file_citation", None), "file_id", None)
        out.append({"file_id": file_id, "file_name": names.get(file_id) if file_id else None,
                    "text": getattr(note, "text", None)})
    return out


def names_found(searches: Sequence[SearchRecord]) -> dict[str, str]:
    """File id -> file name, as the searches' results name them."""
    return {r["file_id"]: r["file_name"] for s in searches for r in s.results
            if isinstance(r.get("file_id"), str) and isinstance(r.get("file_name"), str)}


def searches_in_items(items: Sequence[dict[str, Any]]) -> list[SearchRecord]:
    """The `file_search_call` items of a turn's responses (as JSON data), in order, as the transcript keeps them:
    the same records as a run's steps give."""
    out = []
    for item in items:
        if item.get("type") != "file_search_call":
            continue
        queries = [q for q in _listed(item.get("queries")) if isinstance(q, str)]
        results = [{"file_id": r.get("file_id"), "file_name": r.get("filename"), "score": r.get("score"),
                    "text": str(r.get("text") or "")} for r in _listed(item.get("results")) if isinstance(r, dict)]
        out.append(SearchRecord(queries=queries, results=results))
    return out


def citations_in_items(items: Sequence[dict[str, Any]], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The `file_citation` annotations of a turn's message items (as JSON data), as citations_in gives them: the
    text is the marker at the annotation's index, where the reply has one (the Responses API shows no text)."""
    out = []
    for text, note in item_annotations(items, "file_citation"):
        file_id, index = note.get("file_id"), note.get("index")
        found = _MARKER.match(text, index) if isinstance(index, int) and 0 <= index < len(text) else None
        known = names.get(file_id) if isinstance(file_id, str) else None
        out.append({"file_id": file_id, "file_name": known or note.get("filename"),
                    "text": found.group(0) if found else None})
    return out


def _listed(value: Any) -> list[Any]:
    """`value` when it is a list, else nothing (a backend's odd field is passed over)."""
    return value if isinstance(value, list) else []
