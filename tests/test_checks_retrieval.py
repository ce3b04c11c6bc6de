"""The knowledge-retrieval checks (`file_search`, `cites`) on turn records: each passes when it should and fails
saying what the searches found or what the reply cited; and the conversation-level record joins them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runner.expect.checks import CHECKS, CheckContext, conversation_record, turn_view
from runner.report.transcript import SearchRecord, Transcript, TurnRecord


def result(name: str, text: str, score: float | None = 0.5) -> dict[str, Any]:
    return {"file_id": f"file-{name}", "file_name": name, "score": score, "text": text}


SEARCHED = TurnRecord(index=0, user="how long is the warranty?", status="completed", searches=[
    SearchRecord(queries=["warranty length"], results=[
        result("warranty.md", "Every kettle has a two-year warranty.", 0.83),
        result("faq.txt", "Returns are accepted within 30 days.", 0.41)]),
    SearchRecord(queries=[], results=[]),
], citations=[{"file_id": "file-warranty.md", "file_name": "warranty.md", "text": "【0:0†warranty.md】"},
              {"file_id": "file-x", "file_name": None, "text": "【0:1†source】"}])
NOTHING = TurnRecord(index=0, user="hi", status="completed")


def run(kind: str, arg: Any, turn: TurnRecord) -> tuple[bool, str]:
    outcome = CHECKS[kind](arg, turn, CheckContext())
    assert not asyncio.iscoroutine(outcome)
    return outcome  # type: ignore[return-value]


@pytest.mark.parametrize(("arg", "passes", "reason"), [
    (True, True, "2 file search(es) ran"),
    ({"file": "warranty.md"}, True, "a file search found a result from warranty.md: warranty.md (0.83)"),
    ({"contains": "two-year"}, True, 'a file search found a result containing "two-year": warranty.md (0.83)'),
    ({"file": "faq.txt", "contains": "30 days"}, True, ""),
    # both given: one result must satisfy both
    ({"file": "faq.txt", "contains": "two-year"}, False,
     'expected a file search result from faq.txt containing "two-year"; the searches found: "warranty length" -> '
     "warranty.md (0.83), faq.txt (0.41); no results"),
    ({"file": "manual.pdf"}, False, "expected a file search result from manual.pdf; the searches found: "),
    ({"contains": "Two-Year"}, False, "expected a file search result containing \"Two-Year\""),  # case-sensitive
])
def test_file_search_on_what_the_searches_found(arg: Any, passes: bool, reason: str) -> None:
    ok, why = run("file_search", arg, SEARCHED)
    assert ok is passes
    assert why.startswith(reason), why


def test_file_search_without_any_search_says_so() -> None:
    assert run("file_search", True, NOTHING) == (False, "expected a file search; none ran")
    ok, why = run("file_search", {"file": "warranty.md"}, NOTHING)
    assert not ok and why == "expected a file search result from warranty.md; no file search ran in this turn"
    unscored = TurnRecord(index=0, user="q", searches=[SearchRecord(["q"], [result("a.md", "text", None)])])
    assert run("file_search", {"file": "b.md"}, unscored)[1].endswith('"q" -> a.md (no score)')


@pytest.mark.parametrize(("arg", "passes", "reason"), [
    ("warranty.md", True, "expected the reply to cite warranty.md; it cites warranty.md, file-x"),
    ("faq.txt", False, "expected the reply to cite faq.txt; it cites warranty.md, file-x"),
    (True, True, "expected the reply to cite a file; it cites warranty.md, file-x"),
])
def test_cites_on_the_replys_citations(arg: Any, passes: bool, reason: str) -> None:
    assert run("cites", arg, SEARCHED) == (passes, reason)


def test_cites_without_citations_says_so() -> None:
    assert run("cites", "warranty.md", NOTHING) == (False, "expected the reply to cite warranty.md; it cites no file")
    assert run("cites", True, NOTHING) == (False, "expected the reply to cite a file; it cites no file")


def test_the_conversation_record_and_the_turn_view_carry_searches_and_citations() -> None:
    second = TurnRecord(index=1, user="and returns?", status="completed",
                        searches=[SearchRecord(["returns"], [result("faq.txt", "within 30 days")])],
                        attachments=[{"path": "a/receipt.txt", "file_id": "file-r", "file_name": "receipt.txt"}])
    transcript = Transcript(spec_file="s.yaml", name="s", backend={}, model=None, assistant=None,
                            turns=[SEARCHED, second])
    whole = conversation_record(transcript)
    assert [s.queries for s in whole.searches] == [["warranty length"], [], ["returns"]]
    assert len(whole.citations) == 2 and whole.attachments == second.attachments
    assert run("file_search", {"file": "faq.txt", "contains": "within 30"}, whole)[0]
    view = turn_view(second)
    assert view["searches"] == [{"queries": ["returns"], "results": [result("faq.txt", "within 30 days")]}]
    assert view["citations"] == [] and view["attachments"][0]["file_name"] == "receipt.txt"
