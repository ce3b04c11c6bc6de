"""What a turn's knowledge retrieval did: its run's file searches, read from the run's steps, and the files its
reply cites, read from the messages' `file_citation` annotations."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from runner.report.transcript import SearchRecord

# asks the run steps for each search result's text (without it the API leaves `content` out)
SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
STEP_PAGES = 20  # pages of 100 steps read at most: a run's searches are a few steps, this only bounds a loop


async def run_searches(threads: Any, run: Any) -> list[SearchRecord]:
    """Every file_search call of `run`, in order, with its queries and results (with their text).

    The steps are read as JSON rather than the SDK's types, so a backend's additions (the `queries` each
    search ran, which the API itself does not show) are kept.
    """
    searches: list[SearchRecord] = []
    after: dict[str, str] = {}
    for _ in range(STEP_PAGES):
        response = await threads.runs.steps.with_raw_response.list(
            run.id, thread_id=run.thread_id, include=[SEARCH_CONTENT], order="asc", limit=100, **after)
        page = json.loads(response.http_response.content)
        steps = page.get("data") if isinstance(page, dict) else None
        if not isinstance(steps, list):
            raise ValueError("the run steps came back without a `data` list")
        searches.extend(searches_in(steps))
        if not page.get("has_more") or not steps:
            break
        after = {"after": str(page.get("last_id") or steps[-1].get("id"))}
    return searches


def searches_in(steps: Sequence[Any]) -> list[SearchRecord]:
    """The file_search calls of run steps (as JSON data), in order."""
    out = []
    for step in steps:
        details = step.get("step_details") if isinstance(step, dict) else None
        if not isinstance(details, dict) or details.get("type") != "tool_calls":
            continue
        for call in details.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("type") == "file_search":
                out.append(search_record(call.get("file_search")))
    return out


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
    for message in messages:
        for part in getattr(message, "content", None) or []:
            if getattr(part, "type", None) != "text":
                continue
            for note in getattr(part.text, "annotations", None) or []:
                if getattr(note, "type", None) != "file_citation":
                    continue
                file_id = getattr(getattr(note, "file_citation", None), "file_id", None)
                out.append({"file_id": file_id, "file_name": names.get(file_id) if file_id else None,
                            "text": getattr(note, "text", None)})
    return out


def names_found(searches: Sequence[SearchRecord]) -> dict[str, str]:
    """File id -> file name, as the searches' results name them."""
    return {r["file_id"]: r["file_name"] for s in searches for r in s.results
            if isinstance(r.get("file_id"), str) and isinstance(r.get("file_name"), str)}
