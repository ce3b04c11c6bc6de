"""The built-in tools on the Responses pipeline: the spec's files in a vector store searched by file_search and in
the code interpreter's container, a turn's attachments joining the conversation's own store, and the transcript
showing the same searches, citations, code runs and saved files as the Assistants pipeline's; the examples pass
through both pipelines with every conversation the same."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.engine.code import code_runs_in_items, reply_files_in_items
from runner.engine.outputs import OutputFetcher
from runner.engine.retrieval import citations_in_items, searches_in_items
from runner.server.tools.code_interpreter import SandboxUnavailable, prepare


def _sandbox() -> str | None:
    try:
        prepare()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture
def quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI", "1")  # replay only: nothing may be recorded, nothing leaves the machine


def _transcripts(out: Path, stem: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the assistants transcript, the responses one) of a spec."""
    def read(name: str) -> dict[str, Any]:
        return dict(json.loads(next(out.rglob(name)).read_text(encoding="utf-8")))
    return read(f"{stem}.json"), read(f"{stem}[[]pipeline=responses].json")


def _without_ids(value: Any) -> Any:
    """The value with the backend's ids (which differ between two runs) blanked."""
    text = re.sub(r"\b(file-|vs_|ci_)[A-Za-z0-9]+", r"\1ID", json.dumps(value))
    return json.loads(text.replace("code[pipeline=responses].files", "code.files"))


def test_every_example_passes_on_both_pipelines_and_the_same_on_each(examples_project: Path, quiet_env: None) -> None:
    if _sandbox() is not None:  # without a sandbox the code example is refused up front
        (examples_project / "specs" / "examples" / "code.yaml").unlink()
    result = CliRunner().invoke(cli, ["run", "specs/examples", "--pipeline", "both", "-o", "out"])
    assert result.exit_code == 0, result.output
    (total,) = re.findall(r"parity: (\d+) of (\d+) conversations", result.output)
    assert total[0] == total[1] and int(total[0]) >= 9, result.output


def test_retrieval_through_responses_records_what_the_assistants_pipeline_does(examples_project: Path,
                                                                               quiet_env: None) -> None:
    result = CliRunner().invoke(cli, ["run", "specs/examples/retrieval.yaml", "--pipeline", "both", "-o", "out"])
    assert result.exit_code == 0, result.output
    old, new = _transcripts(examples_project / "out", "retrieval")
    assert new["files"] == old["files"] and new["vector_store_id"] == old["vector_store_id"]  # one store per batch
    for key in ("searches", "citations", "attachments", "reply"):
        assert [_without_ids(t[key]) for t in new["turns"]] == [_without_ids(t[key]) for t in old["turns"]], key
    first, _, attached, last = new["turns"]
    assert first["searches"][0]["queries"] == ["How long is the warranty on my kettle?"]
    assert first["citations"] == [{"file_id": first["citations"][0]["file_id"], "file_name": "warranty.md",
                                   "text": "【0:0†warranty.md】"}]
    assert attached["attachments"][0]["file_name"] == "order-1042.txt"
    assert attached["searches"][0]["results"][0]["file_name"] == "order-1042.txt"  # the conversation's own store
    assert last["searches"] == []


@pytest.mark.skipif(_sandbox() is not None, reason=f"no sandbox here: {_sandbox()}")
def test_code_through_responses_records_its_runs_and_saves_what_it_wrote(examples_project: Path,
                                                                         quiet_env: None) -> None:
    result = CliRunner().invoke(cli, ["run", "specs/examples/code.yaml", "--pipeline", "both", "-o", "out"])
    assert result.exit_code == 0, result.output
    old, new = _transcripts(examples_project / "out", "code")
    for key in ("code_runs", "files", "outputs", "reply"):
        assert [_without_ids(t[key]) for t in new["turns"]] == [_without_ids(t[key]) for t in old["turns"]], key
    saved = examples_project / "out" / "specs" / "examples" / "code[pipeline=responses].files" / "summary.csv"
    assert saved.read_text(encoding="utf-8").startswith("region,share")


@pytest.mark.skipif(_sandbox() is not None, reason=f"no sandbox here: {_sandbox()}")
@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_a_chart_drawn_on_the_responses_pipeline_is_saved_and_checked(tmp_path: Path, quiet_env: None,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chart.yaml").write_text(
        "assistant: {model: scripted, tools: [code_interpreter]}\n"
        "backend:\n  code_timeout: 30\n  rules:\n"
        "    - user: chart\n"
        "      call: {name: code_interpreter, arguments: {code: \"import matplotlib\\nmatplotlib.use('Agg')\\n"
        "import matplotlib.pyplot as plt\\nplt.plot([1, 3, 2])\\nplt.show()\\nprint('drawn')\"}}\n"
        "    - tool_output: drawn\n      reply: Here is the chart.\n"
        "conversation:\n  - user: chart it\n    expect:\n      - image: true\n      - files_created: '*.png'\n",
        encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "chart.yaml", "--pipeline", "both", "-o", "out"])
    assert result.exit_code == 0, result.output
    old, new = _transcripts(tmp_path / "out", "chart")
    (run,) = new["turns"][0]["code_runs"]
    assert run["logs"] == "drawn" and len(run["images"]) == 1
    (png,) = new["turns"][0]["outputs"]
    assert (png["kind"], png["name"]) == ("image", "image-1.png") == (old["turns"][0]["outputs"][0]["kind"],
                                                                    old["turns"][0]["outputs"][0]["name"])
    assert (tmp_path / "out" / png["path"]).read_bytes()[:4] == b"\x89PNG"


def test_a_file_that_fails_to_index_is_the_conversations_error_on_responses(tmp_path: Path, quiet_env: None,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (tmp_path / "spec.yaml").write_text(
        "files: [scan.png]\nassistant: {model: echo, tools: [file_search]}\n"
        "conversation:\n  - user: hi\n    expect: [{contains: hi}]\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "spec.yaml", "--pipeline", "responses", "-o", "out"])
    assert result.exit_code == 1, result.output
    transcript = json.loads((tmp_path / "out" / "spec.json").read_text(encoding="utf-8"))
    assert transcript["error"].startswith("indexing the knowledge files: scan.png failed: unsupported_file")
    assert all(t["skipped"] for t in transcript["turns"])


def test_items_become_the_records_runs_give_and_odd_shapes_are_left_out() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    items: list[dict[str, Any]] = [
        {"type": "file_search_call", "id": "fs_1", "queries": ["q", 3], "results": [
            {"file_id": "file-a", "filename": "a.md", "score": 0.5, "text": "alpha"}, "junk"]},
        {"type": "file_search_call", "id": "fs_2", "queries": ["r"], "results": None},
        {"type": "code_interpreter_call", "id": "ci_1", "code": "x", "container_id": "cntr_1", "outputs": [
            {"type": "logs", "logs": "one"}, {"type": "logs", "logs": "two\n"},
            {"type": "image", "url": "data:image/png;base64," + base64.b64encode(png).decode()},
            {"type": "image", "url": "https://example.invalid/elsewhere.png"},
            {"type": "image", "url": "data:image/png;base64,%%%"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "See 【0:0†a.md】 and sandbox:/mnt/data/o.csv",
                                         "annotations": [
            {"type": "file_citation", "file_id": "file-a", "filename": "a.md", "index": 4},
            {"type": "file_citation", "file_id": "file-b", "filename": "b.md", "index": 999},
            {"type": "container_file_citation", "container_id": "cntr_1", "file_id": "file-o", "filename": "o.csv",
             "start_index": 19, "end_index": 42},
            {"type": "container_file_citation", "container_id": "cntr_1", "file_id": "", "filename": "x",
             "start_index": 0, "end_index": 1}]}]},
    ]
    searches = searches_in_items(items)
    assert [(s.queries, s.results) for s in searches] == [
        (["q"], [{"file_id": "file-a", "file_name": "a.md", "score": 0.5, "text": "alpha"}]), (["r"], [])]
    (run,), images = code_runs_in_items(items)
    assert (run.input, run.logs, run.images) == ("x", "one\ntwo\n", ["ci_1/image-1", "ci_1/image-2", "ci_1/image-3"])
    assert images == [("ci_1/image-1", png)]  # only the inline, well-formed one is kept
    assert citations_in_items(items, {"file-a": "A.md"}) == [
        {"file_id": "file-a", "file_name": "A.md", "text": "【0:0†a.md】"},
        {"file_id": "file-b", "file_name": "b.md", "text": None}]
    assert reply_files_in_items(items) == [{"file_id": "file-o", "path": "sandbox:/mnt/data/o.csv"}]


def test_inline_files_are_kept_within_the_transcripts_budget() -> None:
    fetcher = OutputFetcher(client=type("C", (), {"files": None})(), describe=str, budget=10, file_cap=8)
    first = fetcher.keep("ci_1/image-1", "image-1.png", "image", b"12345")
    again = fetcher.keep("ci_2/image-1", "image-1.png", "image", b"123")
    over = fetcher.keep("ci_3/image-1", "image-1.png", "image", b"123")
    assert (first.saved_as, again.saved_as, over.saved_as) == ("image-1.png", "image-1-2.png", None)
    assert over.skipped is not None and "bytes left" in over.skipped and over.data is None
