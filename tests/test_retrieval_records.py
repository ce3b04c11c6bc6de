"""What the transcript keeps of knowledge retrieval (runner/engine/retrieval.py): searches read from run steps
(the backend's `queries` extension included, pages followed), citations read from messages; and how the writers
show them (JSON, Markdown, the stable view, JUnit and diff unchanged)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from conftest import run_async

from runner.engine.retrieval import SEARCH_CONTENT, citations_in, names_found, run_searches, search_record, searches_in
from runner.report.diff import diff_dirs
from runner.report.junit import to_junit
from runner.report.stable import stable_copy
from runner.report.transcript import SearchRecord, Transcript, TurnRecord
from runner.report.writers import to_json, to_markdown, write_transcript


def step(*calls: dict[str, Any], kind: str = "tool_calls", step_id: str = "step_1") -> dict[str, Any]:
    return {"id": step_id, "type": kind, "step_details": {"type": kind, "tool_calls": list(calls)}}


def file_search(results: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "call_1", "type": "file_search",
            "file_search": {"ranking_options": {"ranker": "auto", "score_threshold": 0.0}, "results": results, **extra}}


HIT = {"file_id": "file-abc", "file_name": "warranty.md", "score": 0.83,
       "content": [{"type": "text", "text": "Every kettle has a two-year warranty."}]}


def test_a_search_record_keeps_queries_results_and_their_text() -> None:
    record = search_record(file_search([HIT], queries=["warranty length", 7])["file_search"])
    assert record == SearchRecord(queries=["warranty length"], results=[
        {"file_id": "file-abc", "file_name": "warranty.md", "score": 0.83,
         "text": "Every kettle has a two-year warranty."}])
    without = search_record({"results": [{"file_id": "file-x", "file_name": "x.md", "score": 0.1}]})
    assert without.queries == [] and without.results[0]["text"] == ""  # no include[]: no text
    assert search_record(None) == SearchRecord() and search_record({"results": ["junk"]}) == SearchRecord()


def test_only_file_search_calls_of_tool_call_steps_count() -> None:
    function = {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{}", "output": "x"}}
    message = {"id": "step_3", "type": "message_creation",
               "step_details": {"type": "message_creation", "message_creation": {"message_id": "msg_1"}}}
    steps = [step(function, file_search([HIT])), message, step(file_search([]), step_id="step_4"), "junk"]
    assert [len(s.results) for s in searches_in(steps)] == [1, 0]


class _Steps:
    """Two pages of run steps, as `threads.runs.steps.with_raw_response.list` answers them."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.with_raw_response = self

    async def list(self, run_id: str, **params: Any) -> Any:
        self.asked.append({"run_id": run_id, **params})
        page = ({"data": [step(file_search([HIT]))], "has_more": True, "last_id": "step_1"} if len(self.asked) == 1
                else {"data": [step(file_search([], queries=["again"]), step_id="step_2")], "has_more": False})
        return SimpleNamespace(http_response=SimpleNamespace(content=json.dumps(page).encode()))


def test_run_searches_reads_every_page_of_the_runs_steps_with_the_results_text() -> None:
    steps = _Steps()
    threads = SimpleNamespace(runs=SimpleNamespace(steps=steps))
    searches = run_async(run_searches(threads, SimpleNamespace(id="run_1", thread_id="thread_1")))
    assert [s.queries for s in searches] == [[], ["again"]]
    assert steps.asked == [
        {"run_id": "run_1", "thread_id": "thread_1", "include": [SEARCH_CONTENT], "order": "asc", "limit": 100},
        {"run_id": "run_1", "thread_id": "thread_1", "include": [SEARCH_CONTENT], "order": "asc", "limit": 100,
         "after": "step_1"}]


def test_citations_come_from_file_citation_annotations_with_the_files_name() -> None:
    from openai.types.beta.threads import Message

    message = Message.model_validate({
        "id": "msg_1", "object": "thread.message", "created_at": 1, "thread_id": "thread_1", "role": "assistant",
        "status": "completed", "assistant_id": "asst_1", "run_id": "run_1", "attachments": [], "metadata": {},
        "completed_at": 1, "incomplete_at": None, "incomplete_details": None,
        "content": [{"type": "text", "text": {"value": "Two years【0:0†warranty.md】 and【0:1†source】.", "annotations": [
            {"type": "file_citation", "text": "【0:0†warranty.md】", "start_index": 9, "end_index": 25,
             "file_citation": {"file_id": "file-abc"}},
            {"type": "file_path", "text": "sandbox:/x", "start_index": 0, "end_index": 1, "file_path": {"file_id": "f"}},
            {"type": "file_citation", "text": "【0:1†source】", "start_index": 29, "end_index": 41,
             "file_citation": {"file_id": "file-unknown"}}]}}]})
    names = names_found([SearchRecord(results=[{"file_id": "file-abc", "file_name": "warranty.md"}])])
    assert citations_in([message], names) == [
        {"file_id": "file-abc", "file_name": "warranty.md", "text": "【0:0†warranty.md】"},
        {"file_id": "file-unknown", "file_name": None, "text": "【0:1†source】"}]


def retrieval_transcript() -> Transcript:
    long = "Every kettle has a two-year warranty. " * 10
    turn = TurnRecord(index=0, user="How long is the warranty?", reply="Two years【0:0†warranty.md】.",
                      status="completed", run_id="run_Ab1",
                      attachments=[{"path": "orders/order-1042.txt", "file_id": "file-Q2", "file_name": "order-1042.txt"}],
                      searches=[SearchRecord(["warranty length"], [
                          {"file_id": "file-W1", "file_name": "warranty.md", "score": 0.834, "text": long},
                          {"file_id": "file-Q2", "file_name": "order-1042.txt", "score": None,
                           "text": "mentions file-W1 and run_Ab1 | in its text"}]), SearchRecord()],
                      citations=[{"file_id": "file-W1", "file_name": "warranty.md", "text": "【0:0†warranty.md】"}])
    return Transcript(spec_file="retrieval.yaml", name="retrieval", backend={"kind": "embedded"}, model="scripted",
                      assistant=None, assistant_id="asst_Z", vector_store_id="vs_S9", turns=[turn],
                      files=[{"path": "knowledge/warranty.md", "file_id": "file-W1", "file_name": "warranty.md"}])


def test_the_markdown_transcript_shows_files_searches_and_citations() -> None:
    text = to_markdown(retrieval_transcript())
    assert "- files: `knowledge/warranty.md`" in text
    assert "- attachment `orders/order-1042.txt`\n- file search `warranty length` → 2 results\n" in text
    assert "  - `warranty.md` (0.83): `Every kettle has a two-year warranty. Every kettle" in text
    assert text.count("Every kettle") == 4 and "Every k…`" in text  # the text is cut at 160 characters
    assert "  - `order-1042.txt`: `mentions file-W1 and run_Ab1 | in its text`\n- file search → 0 results\n" in text
    assert "Citations: `warranty.md` `【0:0†warranty.md】`" in text
    assert text.index("- file search") < text.index("**Assistant**") < text.index("Citations:")


def test_json_keeps_everything_and_the_stable_view_renames_only_ids() -> None:
    transcript = retrieval_transcript()
    data = json.loads(to_json(transcript))
    assert data["files"][0]["file_id"] == "file-W1" and data["vector_store_id"] == "vs_S9"
    turn = data["turns"][0]
    assert turn["searches"][0]["queries"] == ["warranty length"] and len(turn["searches"][0]["results"][0]["text"]) > 300
    assert turn["citations"][0]["text"] == "【0:0†warranty.md】" and turn["attachments"][0]["file_id"] == "file-Q2"
    stable = stable_copy(transcript)
    assert stable.files[0]["file_id"] == "file-1" and stable.vector_store_id == "vs_1"
    assert stable.turns[0].attachments[0]["file_id"] == "file-2"  # numbered by first appearance
    results = stable.turns[0].searches[0].results
    assert [r["file_id"] for r in results] == ["file-1", "file-2"]
    assert results[1]["text"] == "mentions file-W1 and run_Ab1 | in its text"  # a file's own text is never rewritten
    assert stable.turns[0].citations[0]["file_id"] == "file-1"
    assert transcript.files[0]["file_id"] == "file-W1"  # the original is untouched


def test_junit_and_diff_read_transcripts_with_retrieval(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    transcript = retrieval_transcript()
    assert "retrieval" in to_junit([transcript], 0.1)
    write_transcript(tmp_path / "old", transcript)
    transcript.turns[0].searches = []
    write_transcript(tmp_path / "new", transcript)
    result = diff_dirs(tmp_path / "old", tmp_path / "new")
    assert not result.problems and [c.status for c in result.conversations] == ["unchanged"]
