"""`runner rejudge`: recorded transcripts judged again with the specs' current checks, and nothing leaving the
process: no backend, no OpenAI client, no socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import ROOT

from runner.cli import cli
from runner.engine.backend import sandbox_problem
from runner.rejudge import base_case
from runner.report.transcript import (
    CheckResult,
    CodeRunRecord,
    OutputFile,
    SearchRecord,
    ToolCallRecord,
    Transcript,
    TurnRecord,
)

SANDBOX = sandbox_problem() is None
HELLO = Path("out/specs/examples/hello.json")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_CHAT_BASE_URL",
                 "RUNNER_GRADER_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def examples_run(here: Path, examples_project: Path) -> Path:
    """The examples run once into out/ (less code.yaml where no sandbox can run it)."""
    if not SANDBOX:
        (examples_project / "specs" / "examples" / "code.yaml").unlink()
    result = CliRunner().invoke(cli, ["run", "specs/examples", "-o", "out"])
    assert result.exit_code == 0, result.output
    return examples_project


def rejudge(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["rejudge", *args], env=env or {})


def write(path: str, text: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return target


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["run", *args], env=env or {})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("rejudge must not reach out: a connection, a backend or a client was attempted")


@pytest.fixture
def go_offline(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Once called: no socket can connect, and neither the embedded backend nor (unless `clients`) an OpenAI client
    can be made."""
    import openai

    import runner.server.app

    def block(clients: bool = False) -> None:
        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)
        monkeypatch.setattr(runner.server.app.Backend, "__init__", refuse)
        if not clients:
            monkeypatch.setattr(openai.AsyncOpenAI, "__init__", refuse)
            monkeypatch.setattr(openai.OpenAI, "__init__", refuse)

    return block


def test_rejudging_the_examples_offline_flips_a_verdict_and_back(examples_run: Path,
                                                                  go_offline: Callable[..., None]) -> None:
    go_offline()
    before = snapshot(Path("out"))
    result = rejudge("out")
    assert result.exit_code == 0, result.output
    assert snapshot(Path("out")) == before  # the same checks on the same replies: the same transcripts, byte for byte

    spec = Path("specs/examples/hello.yaml")
    original = spec.read_text(encoding="utf-8")
    spec.write_text(original.replace("- contains: 你好呀", "- contains: Goodbye"), encoding="utf-8")
    result = rejudge("out", "--summary", "summary.json", "--junit", "junit.xml", "--html", "report.html")
    assert result.exit_code == 1, result.output
    assert 'turn 1 contains [specs/examples/hello.yaml:14:19]: expected the reply to contain "Goodbye"' in result.output
    assert "verdict changed: specs/examples/hello.yaml  hello: passed -> failed" in result.output
    data = json.loads(HELLO.read_text(encoding="utf-8"))
    assert data["verdict"] == "failed" and data["checks"] == {"passed": 2, "failed": 1, "not_judged": 0}
    assert HELLO.with_suffix(".md").read_text(encoding="utf-8").startswith("# hello — FAILED")
    summary = json.loads(Path("summary.json").read_text(encoding="utf-8"))
    assert summary["totals"]["failed"] == 1 and summary["totals"]["conversations"] == len(
        [p for p in before if p.endswith(".json") and ".files/" not in p])
    assert 'failures="1"' in Path("junit.xml").read_text(encoding="utf-8")
    page = Path("report.html").read_text(encoding="utf-8")
    assert "runner rejudge" in page and "expected the reply to contain \\\"Goodbye\\\"" in page

    spec.write_text(original, encoding="utf-8")
    result = rejudge("out")
    assert result.exit_code == 0, result.output
    assert "verdict changed: specs/examples/hello.yaml  hello: failed -> passed" in result.output
    assert snapshot(Path("out")) == before


def test_the_rejudge_path_never_imports_the_engine() -> None:
    code = "import sys, runner.rejudge, runner.cli; assert not [m for m in sys.modules if m.startswith('runner.engine')]"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_json_transcripts_read_back_as_they_were_written(examples_run: Path) -> None:
    files = [p for p in Path("out").rglob("*.json") if ".files" not in p.parent.name]
    assert len(files) >= 9
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert Transcript.from_dict(data).to_dict() == data, path


def full_transcript() -> Transcript:
    """One transcript with every kind of record: tool calls, searches, citations, code runs, outputs, checks."""
    turn = TurnRecord(
        index=0, user="sum it", reply="Total 3 【4:0†a.csv】", messages=[{"id": "msg_1", "text": "Total 3"}],
        tool_calls=[ToolCallRecord("call_1", "add", {"a": 1, "b": 2}, "3")],
        attachments=[{"path": "data/a.csv", "file_id": "file-1", "file_name": "a.csv"}],
        searches=[SearchRecord(["total"], [{"file_id": "file-1", "file_name": "a.csv", "score": 0.5, "text": "1,2"}])],
        citations=[{"file_id": "file-1", "file_name": "a.csv", "text": "【4:0†a.csv】"}],
        code_runs=[CodeRunRecord("print(1+2)", "3\n", ["file-2"])], images=["file-2"],
        files=[{"file_id": "file-3", "path": "sandbox:/mnt/data/out.csv"}],
        outputs=[OutputFile("file-2", "image-1.png", "image", 10, "image-1.png"),
                 OutputFile("file-3", "out.csv", "file", None, None, "too large")],
        run_id="run_1", status="completed", last_error=None, incomplete_details={"reason": "max_tokens"},
        usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, latency_ms=12.3,
        checks=[CheckResult("status", "completed", True, "fine", implicit=True),
                CheckResult("llm_rubric", "Be nice.", False, "not re-judged: no recording", "s.yaml:5:9",
                            judged=False)])
    return Transcript(spec_file="specs/s.yaml", name="s[x=1]", case="x=1", backend={"kind": "embedded"},
                      model="scripted", assistant={"model": "scripted"}, tags=["t"], assistant_id="asst_1",
                      thread_id="thread_1", started_at=1.5, duration_ms=20.0,
                      turns=[turn, TurnRecord(index=1, user="next", skipped=True)],
                      files=[{"path": "data/a.csv", "file_id": "file-1", "file_name": "a.csv"}],
                      vector_store_id="vs_1", pipeline="responses", error=None,
                      conversation={"assistant": "a", "backend": "b", "files": "f", "turns": ["1", "2"]},
                      conversation_checks=[CheckResult("contains", "3", True, "ok", "s.yaml:9:5")])


def test_from_dict_is_the_inverse_of_to_dict() -> None:
    transcript = full_transcript()
    data = json.loads(json.dumps(transcript.to_dict()))
    again = Transcript.from_dict(data)
    assert again == transcript
    assert again.to_dict() == data
    assert again.turns[0].outputs[0].saved_as == "image-1.png" and again.turns[0].outputs[1].saved_as is None


def test_a_changed_turn_needs_a_run_and_is_not_judged(examples_run: Path) -> None:
    spec = Path("specs/examples/multi_turn.yaml")
    spec.write_text(spec.read_text(encoding="utf-8").replace("Where is my order", "Where is my parcel"),
                    encoding="utf-8")
    before = Path("out/specs/examples/multi_turn.json").read_bytes()
    result = rejudge("out")
    assert result.exit_code == 1, result.output
    assert ("RUN   specs/examples/multi_turn.yaml  multi-turn: needs a run, turn 2's user text changed"
            in result.output)
    assert "1 needs a run" in result.output
    assert Path("out/specs/examples/multi_turn.json").read_bytes() == before  # not judged against the wrong text


@pytest.mark.parametrize(("change", "said"), [
    (("model: scripted", "model: echo"), "the assistant's model changed (scripted -> echo)"),
    (("instructions: Use get_weather", "instructions: Always use get_weather"), "the assistant's instructions changed"),
])
def test_a_changed_assistant_needs_a_run(examples_run: Path, change: tuple[str, str], said: str) -> None:
    spec = Path("specs/examples/weather_tool.yaml")
    text = spec.read_text(encoding="utf-8")
    assert change[0] in text
    spec.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    result = rejudge("out", "specs/examples/weather_tool.yaml")
    assert result.exit_code == 1, result.output
    assert said in result.output, result.output


def test_changed_run_options_need_a_run_and_changed_checks_do_not(here: Path) -> None:
    spec = write("greet.yaml", """
    assistant: {model: echo}
    conversation:
      - user: hello there
        expect: [{contains: hello}]
    """)
    assert run("greet.yaml").exit_code == 0
    spec.write_text(spec.read_text().replace("{contains: hello}", "{contains: there}"), encoding="utf-8")
    assert rejudge("transcripts").exit_code == 0
    spec.write_text(spec.read_text().replace("    expect:", "    run: {temperature: 0.5}\n    expect:"),
                    encoding="utf-8")
    result = rejudge("transcripts")
    assert result.exit_code == 1 and "turn 1's run options, instructions, tool outputs or attachments changed" \
        in result.output, result.output


def test_a_deleted_spec_and_a_dropped_case_are_reported_not_judged(examples_run: Path) -> None:
    Path("specs/examples/hello.yaml").unlink()
    matrix = Path("specs/examples/greetings_matrix.yaml")
    text = matrix.read_text(encoding="utf-8")
    assert "  include: [{lang: de, tone: formal}]\n" in text
    before = snapshot(Path("out"))
    result = rejudge("out")
    assert result.exit_code == 1, result.output
    assert "GONE  specs/examples/hello.yaml  hello: its spec specs/examples/hello.yaml is gone" in result.output
    assert snapshot(Path("out")) == before
    matrix.write_text(text.replace("  include: [{lang: de, tone: formal}]\n", ""), encoding="utf-8")
    result = rejudge("out", "specs/examples/greetings_matrix.yaml")
    assert result.exit_code == 1, result.output
    assert "its case 'lang=de,tone=formal' is no longer in specs/examples/greetings_matrix.yaml" in result.output
    assert "4 re-judged" not in result.output and "3 re-judged: 3 passed" in result.output
    assert "of other specs left alone" in result.output


def test_specs_given_restrict_the_rejudge(examples_run: Path) -> None:
    result = rejudge("out", "specs/examples/hello.yaml")
    assert result.exit_code == 0, result.output
    assert "1 re-judged: 1 passed, 0 failed" in result.output and "of other specs left alone" in result.output
    result = rejudge("out", "elsewhere.yaml")
    assert result.exit_code == 2 and "elsewhere.yaml: no such file or folder" in result.output


GRADED = """
assistant: {model: echo}
conversation:
  - user: Thank you kindly
    expect: [%s]
"""


def test_an_llm_rubric_without_a_recording_is_not_re_judged(here: Path, go_offline: Callable[..., None]) -> None:
    spec = write("spec.yaml", GRADED % "{contains: Thank}")
    assert run("spec.yaml").exit_code == 0
    go_offline(clients=True)  # the grader's client is made, and its request answered by the cassette (or not)
    spec.write_text(GRADED % "{llm_rubric: {rubric: Polite reply., model: gpt-grader}}", encoding="utf-8")
    result = rejudge("transcripts")
    assert result.exit_code == 1, result.output
    data = json.loads(Path("transcripts/spec.json").read_text(encoding="utf-8"))
    (check,) = [c for c in data["turns"][0]["checks"] if c["type"] == "llm_rubric"]
    assert check["judged"] is False and check["passed"] is False
    assert check["reason"].startswith("not re-judged: no recording answers its grader call (replay:")
    assert data["verdict"] == "failed" and data["checks"]["not_judged"] == 1
    assert "turn 1 llm_rubric [spec.yaml:5:27]: not re-judged: no recording answers" in result.output
    assert "| not judged |" in Path("transcripts/spec.md").read_text(encoding="utf-8")

    # `not` of a check that could not be judged is not judged either: it must never pass
    spec.write_text(GRADED % "{not: {llm_rubric: {rubric: Rude reply., model: gpt-grader}}}", encoding="utf-8")
    result = rejudge("transcripts", "--summary", "summary.json")
    assert result.exit_code == 1, result.output
    data = json.loads(Path("transcripts/spec.json").read_text(encoding="utf-8"))
    (check,) = [c for c in data["turns"][0]["checks"] if c["type"] == "not"]
    assert check["judged"] is False and check["passed"] is False
    summary = json.loads(Path("summary.json").read_text(encoding="utf-8"))
    assert summary["conversations"][0]["failures"][0]["kind"] == "not_judged"


def test_an_llm_rubric_replays_its_recorded_grade(here: Path, go_offline: Callable[..., None]) -> None:
    from fake_upstream import fake_upstream, response_body

    spec = write("spec.yaml", GRADED % "{llm_rubric: {rubric: Polite reply., model: gpt-grader}}")
    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(text='{"score": 0.8, "reason": "polite"}'), {}))
        env = {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-grader-" + "x" * 20}
        result = run("spec.yaml", "--record", "once", env=env)
        assert result.exit_code == 0, result.output
    go_offline(clients=True)
    result = rejudge("transcripts", env=env)  # the fake is gone: the grade comes from the cassette
    assert result.exit_code == 0, result.output
    (check,) = [c for c in json.loads(Path("transcripts/spec.json").read_text())["turns"][0]["checks"]
                if c["type"] == "llm_rubric"]
    assert check["judged"] is True and "graded 0.80: polite" in check["reason"]
    spec.write_text(GRADED % "{llm_rubric: {rubric: Polite reply., model: gpt-grader, threshold: 0.9}}",
                    encoding="utf-8")
    result = rejudge("transcripts", env=env)  # the same call, a stricter threshold: judged, and it fails
    assert result.exit_code == 1 and "graded 0.80" in result.output, result.output
    spec.write_text(GRADED % "{llm_rubric: {rubric: A rude reply., model: gpt-grader}}", encoding="utf-8")
    result = rejudge("transcripts", env=env)  # a new rubric: a call never recorded
    assert result.exit_code == 1 and "not re-judged: no recording answers its grader call" in result.output


def test_a_corrupt_transcript_is_named_and_the_others_judged(examples_run: Path) -> None:
    Path("out/specs/examples/hello.json").write_text('{"spec_file": "specs/examples/hello.yaml", ', encoding="utf-8")
    Path("out/summary.json").write_text('{"version": 1, "totals": {}}', encoding="utf-8")  # not a transcript: a note
    result = rejudge("out")
    assert result.exit_code == 1, result.output
    assert "cannot read the transcript out/specs/examples/hello.json: not valid JSON" in result.output
    assert "1 unreadable" in result.output and " failed" in result.output
    assert "summary.json" not in result.output


def test_repeat_and_pipeline_cases_map_back_to_their_conversation(here: Path) -> None:
    spec = write("greet.yaml", """
    assistant: {model: echo}
    conversation:
      - user: hello there
        expect: [{contains: hello}]
    """)
    result = run("greet.yaml", "--repeat", "2", "--pipeline", "both")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in Path("transcripts").glob("*.json"))
    assert names == ["greet[pipeline=responses,repeat=1].json", "greet[pipeline=responses,repeat=2].json",
                     "greet[repeat=1].json", "greet[repeat=2].json"]
    spec.write_text(spec.read_text().replace("{contains: hello}", "{contains: nope}"), encoding="utf-8")
    result = rejudge("transcripts")
    assert result.exit_code == 1, result.output
    assert "4 re-judged: 0 passed, 4 failed; 4 changed verdict" in result.output
    assert json.loads(Path("transcripts/greet[pipeline=responses,repeat=2].json").read_text())["pipeline"] == "responses"


@pytest.mark.parametrize(("case", "base"), [
    ("", ("", False)), ("repeat=2", ("", True)), ("pipeline=responses", ("", False)),
    ("lang=fr,pipeline=responses,repeat=3", ("lang=fr", True)), ("lang=fr", ("lang=fr", False)),
])
def test_base_case(case: str, base: tuple[str, bool]) -> None:
    assert base_case(case) == base


def test_a_stable_folder_stays_stable(here: Path) -> None:
    spec = write("greet.yaml", """
    assistant: {model: echo}
    conversation:
      - user: hello there
        expect: [{contains: hello}]
    """)
    assert run("greet.yaml", "--stable").exit_code == 0
    before = snapshot(Path("transcripts"))
    assert rejudge("transcripts").exit_code == 0
    assert snapshot(Path("transcripts")) == before
    spec.write_text(spec.read_text().replace("{contains: hello}", "{contains: bye}"), encoding="utf-8")
    assert rejudge("transcripts").exit_code == 1
    data = json.loads(Path("transcripts/greet.json").read_text())
    assert data["started_at"] == 0 and data["assistant_id"] == "asst_1" and data["verdict"] == "failed"


def test_an_older_transcript_without_digests_is_compared_by_what_it_shows(here: Path) -> None:
    spec = write("greet.yaml", """
    assistant: {model: echo}
    conversation:
      - user: hello there
        expect: [{contains: hello}]
    """)
    assert run("greet.yaml").exit_code == 0
    path = Path("transcripts/greet.json")
    data = json.loads(path.read_text())
    del data["conversation"]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert rejudge("transcripts").exit_code == 0
    spec.write_text(spec.read_text().replace("hello there", "hello you"), encoding="utf-8")
    result = rejudge("transcripts")
    assert result.exit_code == 1 and "turn 1's user text changed" in result.output


def test_usage_and_spec_errors_exit_2_and_write_nothing(here: Path) -> None:
    spec = write("greet.yaml", """
    assistant: {model: echo}
    conversation: [{user: hi, expect: [{contains: hi}]}]
    """)
    assert run("greet.yaml").exit_code == 0
    before = snapshot(Path("transcripts"))
    spec.write_text("assistant: {model: echo}\nconversation: [{user: hi, expect: [{nope: 1}]}]\n", encoding="utf-8")
    result = rejudge("transcripts")
    assert result.exit_code == 2 and "greet.yaml:" in result.output and "nothing was re-judged" in result.output
    assert snapshot(Path("transcripts")) == before
    Path("empty").mkdir()
    result = rejudge("empty")
    assert result.exit_code == 2 and "no transcripts" in result.output
    assert rejudge("missing").exit_code == 2
    write("other.yaml", "assistant: {model: echo}\nconversation: [{user: hi}]\n")
    result = rejudge("transcripts", "other.yaml")
    assert result.exit_code == 2 and "none of the 1 transcripts" in result.output


@pytest.mark.parametrize(("kind", "others", "passed", "judged"), [
    ("all", [("contains", "hi", True)], False, False),  # nothing failed yet: the unjudged part decides
    ("all", [("contains", "nope", False)], False, True),  # a failure decides `all` whatever the rest
    ("any", [("contains", "hi", True)], True, True),  # a pass decides `any` whatever the rest
    ("any", [("contains", "nope", False)], False, False),
])
def test_composites_holding_an_unjudged_check(kind: str, others: list[tuple[str, str, bool]], passed: bool,
                                              judged: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from runner.expect import CHECKS, CannotJudge
    from runner.expect.checks import CheckContext, evaluate
    from runner.spec.model import Check

    def unjudgeable(arg: Any, turn: TurnRecord, ctx: CheckContext) -> tuple[bool, str]:
        raise CannotJudge("not re-judged: no recording")

    monkeypatch.setitem(CHECKS, "unjudgeable", unjudgeable)
    inner = (Check("unjudgeable", None), *(Check(k, a) for k, a, _ in others))
    result = asyncio.run(evaluate(Check(kind, inner), TurnRecord(index=0, user="hi", reply="hi"), CheckContext()))
    assert (result.passed, result.judged) == (passed, judged), result.reason


def test_last_failed_after_a_rejudge_takes_what_fails_now_and_what_needs_a_run(examples_run: Path) -> None:
    from runner.lastfailed import load

    hello = Path("specs/examples/hello.yaml")
    hello.write_text(hello.read_text(encoding="utf-8").replace("contains: 你好呀", "contains: Goodbye"),
                     encoding="utf-8")
    multi = Path("specs/examples/multi_turn.yaml")
    multi.write_text(multi.read_text(encoding="utf-8").replace("temperature: 0.2", "temperature: 0.3"),
                     encoding="utf-8")
    assert load(Path("out")).failed == set()
    assert rejudge("out").exit_code == 1
    assert load(Path("out")).failed == {"specs/examples/hello.yaml", "specs/examples/multi_turn.yaml"}
    again = run("specs/examples", "-o", "out", "--lf")
    assert "running the 2 runs that failed last time" in again.output
    assert load(Path("out")).failed == {"specs/examples/hello.yaml"}  # multi-turn ran again and passed


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def transcript_count(folder: Path) -> int:
    return len([p for p in folder.rglob("*.json") if ".files" not in p.as_posix()])


def assert_only_hello_unreadable(result: Result, said: str) -> None:
    """Exit 1 with no traceback, hello.json named with `said`, and every other transcript judged."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"cannot read the transcript {HELLO}: " in result.output and said in result.output, result.output
    assert "1 unreadable" in result.output
    others = transcript_count(Path("out")) - 1
    assert f"{others} re-judged: {others} passed" in result.output
    summary = json.loads(Path("summary.json").read_text(encoding="utf-8"))
    assert summary["totals"]["conversations"] == others


@pytest.mark.parametrize(("where", "value", "said"), [
    ("turns.0.reply", 5, "turns[0].reply: expected a string, got int"),
    ("turns.0.code_runs", [{"input": None}], "turns[0].code_runs[0].input: expected a string, got null"),
    ("case", ["a"], "case: expected a string, got list"),
    ("conversation.turns", 5, "conversation.turns: expected a list of strings or null, got int"),
    ("backend", [], "backend: expected an object, got list"),
    ("turns.0.index", "zero", "turns[0].index: expected an integer, got str"),
    ("turns.0.latency_ms", "slow", "turns[0].latency_ms: expected a number or null, got str"),
    ("turns.0.usage", "lots", "turns[0].usage: expected an object or null, got str"),
    ("files", "x", "files: expected a list of objects, got str"),
    ("turns.0.citations", {"a": 1}, "turns[0].citations: expected a list of objects, got dict"),
    ("turns.0.checks.0.passed", "yes", "turns[0].checks[0].passed: expected true or false, got str"),
])
def test_a_hand_edited_transcript_is_named_with_its_field_and_the_others_judged(
        examples_run: Path, where: str, value: Any, said: str) -> None:
    def change(data: dict[str, Any]) -> None:
        *parents, last = where.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[last] = value

    edit(HELLO, change)
    result = rejudge("out", "--summary", "summary.json")
    assert_only_hello_unreadable(result, said)


def test_a_failure_judging_or_rendering_one_transcript_leaves_it_alone(examples_run: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.rejudge
    from runner.report import writers

    spec = Path("specs/examples/hello.yaml")
    spec.write_text(spec.read_text(encoding="utf-8").replace("- contains: 你好呀", "- contains: Goodbye"),
                    encoding="utf-8")
    hello = HELLO.read_bytes()
    events: list[str] = []
    markdown, write_all = writers.to_markdown, runner.rejudge.atomic_write_all

    def render(transcript: Transcript) -> str:
        events.append("render")
        if transcript.name == "hello":
            raise KeyError("surprise")
        return markdown(transcript)

    def write_files(files: list[tuple[Path, str | bytes]]) -> None:
        events.append("write")
        write_all(files)

    monkeypatch.setattr(runner.rejudge, "to_markdown", render)
    monkeypatch.setattr(runner.rejudge, "atomic_write_all", write_files)
    result = rejudge("out", "--summary", "summary.json")
    assert_only_hello_unreadable(result, "cannot be rendered (KeyError: 'surprise')")
    assert HELLO.read_bytes() == hello  # left as it was, and the others written, once all were rendered
    assert "write" in events and "render" not in events[events.index("write"):]

    def broken_judge(*args: Any) -> None:
        raise TypeError("unexpected data")

    monkeypatch.setattr(runner.rejudge, "to_markdown", markdown)
    monkeypatch.setattr(runner.rejudge, "judge", broken_judge)
    result = rejudge("out")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"cannot read the transcript {HELLO}: cannot be judged (TypeError: unexpected data)" in result.output
    assert HELLO.read_bytes() == hello

    def broken_change(*args: Any) -> None:
        raise AttributeError("odd")

    monkeypatch.setattr(runner.rejudge, "conversation_change", broken_change)
    result = rejudge("out")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{HELLO}: cannot be matched to its spec (AttributeError: odd)" in result.output


@pytest.mark.parametrize("key", ["verdict", "spec_file", "name", "turns"])
def test_a_transcript_missing_a_required_key_is_reported(examples_run: Path, key: str) -> None:
    edit(HELLO, lambda data: data.pop(key))
    result = rejudge("out", "--summary", "summary.json")
    assert_only_hello_unreadable(result, f"{key}: missing")


@pytest.mark.parametrize("spec_file", ["../../etc/passwd", "/etc/passwd", "specs/../../outside.yaml",
                                       "specs/link/outside.yaml"])
def test_a_spec_file_outside_the_working_folder_is_never_loaded(examples_run: Path, spec_file: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    import runner.cli

    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "outside.yaml").write_text("assistant: {model: echo}\nconversation: [{user: hi}]\n", encoding="utf-8")
    Path("specs/link").symlink_to(outside)  # inside the working folder, leading outside it
    edit(HELLO, lambda data: data.update(spec_file=spec_file))
    loaded: list[str] = []
    load_cases = runner.cli.load_cases
    monkeypatch.setattr(runner.cli, "load_cases",
                        lambda file, *args: loaded.append(str(file)) or load_cases(file, *args))
    result = rejudge("out", "--summary", "summary.json")
    assert_only_hello_unreadable(result, f"its spec_file {spec_file} is outside the working folder")
    assert not [file for file in loaded if "outside" in file or "passwd" in file]


def test_a_symlinked_transcript_is_skipped_and_stays_a_link(examples_run: Path) -> None:
    link = Path("out/link.json")
    link.symlink_to(HELLO.resolve())
    Path("out/linked").symlink_to(HELLO.parent.resolve(), target_is_directory=True)
    result = rejudge("out", "--summary", "summary.json")
    assert result.exit_code == 0, result.output
    assert f"warning: skipped {link}: a symbolic link" in result.output
    assert link.is_symlink()  # and out/linked/ adds no conversation either (the count below)
    summary = json.loads(Path("summary.json").read_text(encoding="utf-8"))
    assert summary["totals"]["conversations"] == transcript_count(Path("out")) - 1


def test_the_same_conversation_twice_is_judged_once(examples_run: Path) -> None:
    copy = Path("out/again/hello.json")
    copy.parent.mkdir()
    copy.write_bytes(HELLO.read_bytes())
    result = rejudge("out", "--summary", "summary.json")
    assert result.exit_code == 1, result.output
    # the first in path order is judged (out/again/ sorts before out/specs/), the other named
    assert (f"cannot read the transcript {HELLO}: the same conversation (specs/examples/hello.yaml) as {copy}: "
            "not judged twice") in result.output
    summary = json.loads(Path("summary.json").read_text(encoding="utf-8"))
    assert summary["totals"]["conversations"] == transcript_count(Path("out")) - 1


def test_a_transcript_of_another_version_is_reported(examples_run: Path) -> None:
    edit(HELLO, lambda data: data.update(version=2))
    result = rejudge("out", "--summary", "summary.json")
    assert_only_hello_unreadable(result, "written by another version (transcript version 2")
