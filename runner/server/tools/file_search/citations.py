"""What a model reads of a file search, and the citations it writes back.

Each result the model reads starts with a marker in the hosted API's form, `【n:m†name】` (the run's n-th
search, its m-th result), and a reply that copies a marker gets a `file_citation` annotation on it pointing at
that result's file, as the hosted API annotated its replies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# `【4:0†source】`: the hosted API's models wrote `source` or the file's name after the dagger; both count
MARKER = re.compile(r"【(\d+):(\d+)†[^】\n]{0,256}】")


def marker(search: int, result: int, name: str) -> str:
    """The marker a model copies to cite result `result` of the run's search number `search`."""
    return f"【{search}:{result}†{name}】"


def search_output(search: int, query: str, results: Sequence[dict[str, Any]]) -> str:
    """The search's results as the model reads them: each under its marker, with its file, score and text."""
    if not results:
        return f"file_search found nothing for {query!r}."
    head = f"file_search results for {query!r}. Cite a result you use by copying the 【...】 marker before it."
    return "\n\n".join([head, *(
        f"{marker(search, i, r['file_name'])} {r['file_name']} (score {r['score']:.2f})\n"
        + "\n".join(part["text"] for part in r["content"]) for i, r in enumerate(results))])


def file_citations(text: str, searches: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """The `file_citation` annotations of a reply: one per marker naming a result of the run's searches
    (`searches[n][m]`: the file id of result m of search n). A marker that names no result is left as text."""
    found: list[dict[str, Any]] = []
    for match in MARKER.finditer(text):
        n, m = int(match.group(1)), int(match.group(2))
        if n < len(searches) and m < len(searches[n]):
            found.append({"type": "file_citation", "text": match.group(0), "start_index": match.start(),
                          "end_index": match.end(), "file_citation": {"file_id": searches[n][m]}})
    return found
