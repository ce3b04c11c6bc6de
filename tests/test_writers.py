"""Transcript writers (runner/report/writers.py) and console lines (runner/report/console.py)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import click
import pytest

from runner.report import writers
from runner.report.console import conversation_line, total_line
from runner.report.transcript import CheckResult, ToolCallRecord, Transcript, TurnRecord
from runner.report.writers import atomic_write, to_json, to_markdown, transcript_stem, write_transcript


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


# --- atomic_write -----------------------------------------------------------------------------------


def test_atomic_write_creates_parent_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c" / "out.json"
    atomic_write(target, "hello\n")
    assert target.read_text(encoding="utf-8") == "hello\n"
    assert leftovers(target.parent) == []


def test_atomic_write_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.md"
    target.write_text("old old old old", encoding="utf-8")
    atomic_write(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert leftovers(tmp_path) == []


def test_atomic_write_writes_utf8_and_lf(tmp_path: Path) -> None:
    target = tmp_path / "out.md"
    atomic_write(target, "é — ✓\nline2\n")
    assert target.read_bytes() == "é — ✓\nline2\n".encode()


def test_atomic_write_failing_replace_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.json"
    target.write_text("old", encoding="utf-8")

    def boom(src: Any, dst: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(writers.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write(target, "new")
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "old"
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_write_failing_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.json"
    target.write_text("old", encoding="utf-8")
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.f.close()

        def write(self, text: str) -> int:
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError("no space left on device")

    monkeypatch.setattr(writers.os, "fdopen", lambda fd, *a, **kw: HalfWriter(real_fdopen(fd, *a, **kw)))
    with pytest.raises(OSError, match="no space left"):
        atomic_write(target, "new contents that will not fit")
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "old"
    assert leftovers(tmp_path) == []


def test_atomic_write_keyboard_interrupt_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.json"

    def interrupt(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "x")
    monkeypatch.undo()
    assert not target.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_atomic_write_gives_up_when_the_folder_takes_no_new_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that exists yet says "no such file" (as /proc does) is made again once, then the error stands:
    no endless loop."""
    calls = []

    def missing(path: str, *args: Any) -> int:
        calls.append(path)
        if len(calls) > 50:
            raise AssertionError("retried without end")
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(writers.os, "open", missing)
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "out.html", "x")
    assert len(calls) == 2


def test_atomic_write_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "out.json", "{}")
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


# --- transcript_stem ---------------------------------------------------------------------------------


def test_transcript_stem_mirrors_relative_spec_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs" / "sub").mkdir(parents=True)
    out = Path("out")
    assert transcript_stem(out, "specs/sub/hello.yaml") == out / "specs" / "sub" / "hello"
    assert transcript_stem(out, "./specs/hello.yml") == out / "specs" / "hello"


def test_transcript_stem_absolute_path_inside_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "specs" / "a.yaml"
    assert transcript_stem(Path("out"), str(spec)) == Path("out") / "specs" / "a"


def test_transcript_stem_outside_cwd_mirrors_the_absolute_path(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside = tmp_path / "elsewhere" / "deep" / "greet.yaml"
    mirrored = Path("out") / str(tmp_path.resolve()).lstrip("/") / "elsewhere"
    assert transcript_stem(Path("out"), str(outside)) == mirrored / "deep" / "greet"
    # two specs of the same name in different folders never share transcripts
    assert transcript_stem(Path("out"), "../elsewhere/greet.yaml") == mirrored / "greet"


def test_write_transcript_dotted_spec_names_do_not_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    j1, m1 = write_transcript(Path("out"), make_transcript(spec_file="specs/greet.v1.yaml"))
    j2, m2 = write_transcript(Path("out"), make_transcript(spec_file="specs/greet.v2.yaml"))
    assert j1 != j2 and m1 != m2
    assert j1 == Path("out/specs/greet.v1.json")


# --- transcript fixtures -------------------------------------------------------------------------------


def make_transcript(**kw: Any) -> Transcript:
    turn0 = TurnRecord(
        index=0,
        user="What's the weather in Paris?",
        reply="It is sunny in Paris.\nEnjoy!",
        messages=[{"id": "msg_1", "text": "It is sunny in Paris.\nEnjoy!"}],
        tool_calls=[
            ToolCallRecord("call_1", "get_weather", {"city": "Paris", "days": 2}, '{"sky": "sunny"}')
        ],
        run_id="run_1",
        status="completed",
        usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        latency_ms=42.4,
        checks=[
            CheckResult(
                "status",
                "completed",
                True,
                "expected the run to end completed; it ended completed",
                implicit=True,
            ),
            CheckResult(
                "contains", "sunny", True, 'expected the reply to contain "sunny"', "specs/w.yaml:9:19"
            ),
            CheckResult(
                "contains",
                "rain",
                False,
                'expected the reply to contain "rain"; reply: "It is sunny"',
                "specs/w.yaml:10:19",
            ),
        ],
    )
    turn1 = TurnRecord(index=1, user="And tomorrow?", skipped=True)
    defaults: dict[str, Any] = dict(
        spec_file="specs/w.yaml",
        name="weather",
        backend={"kind": "embedded", "provider": "scripted"},
        model="scripted",
        assistant={"model": "scripted"},
        description="Checks the weather tool.",
        tags=["tools"],
        assistant_id="asst_1",
        thread_id="thread_1",
        started_at=1700000000.0,
        duration_ms=55.0,
        turns=[turn0, turn1],
    )
    defaults.update(kw)
    return Transcript(**defaults)


def passing(name: str = "ok", spec: str = "specs/ok.yaml") -> Transcript:
    turn = TurnRecord(
        index=0,
        user="hi",
        reply="hi",
        status="completed",
        latency_ms=1.0,
        checks=[CheckResult("status", "completed", True, "fine", implicit=True)],
    )
    return Transcript(
        spec_file=spec,
        name=name,
        backend={"kind": "embedded"},
        model="echo",
        assistant=None,
        turns=[turn],
        duration_ms=3.0,
    )


def erroring() -> Transcript:
    turn0 = TurnRecord(
        index=0,
        user="hi",
        status=None,
        error="connection refused",
        latency_ms=2.0,
        checks=[
            CheckResult(
                "status",
                "completed",
                False,
                "expected the run to end completed; it ended None (connection refused)",
                implicit=True,
            )
        ],
    )
    turn1 = TurnRecord(index=1, user="again", skipped=True)
    return Transcript(
        spec_file="specs/err.yaml",
        name="err",
        backend={"kind": "remote", "base_url": "http://h/v1"},
        model="gpt-x",
        assistant=None,
        turns=[turn0, turn1],
        error="turn 1: connection refused",
    )


# --- write_transcript, JSON --------------------------------------------------------------------------


def test_write_transcript_writes_json_and_md(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    t = make_transcript()
    json_path, md_path = write_transcript(Path("out"), t)
    assert json_path == Path("out/specs/w.json")
    assert md_path == Path("out/specs/w.md")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data == t.to_dict()
    assert data["verdict"] == "failed"
    assert data["checks"] == {"passed": 2, "failed": 1, "not_judged": 0}
    assert data["spec_file"] == "specs/w.yaml"
    assert data["turns"][0]["tool_calls"][0]["arguments"] == {"city": "Paris", "days": 2}
    assert data["turns"][0]["checks"][2]["where"] == "specs/w.yaml:10:19"
    assert data["turns"][1]["skipped"] is True
    assert md_path.read_text(encoding="utf-8") == to_markdown(t)
    assert leftovers(json_path.parent) == []


def test_json_round_trips_into_transcript() -> None:
    t = make_transcript()
    data = json.loads(to_json(t))
    for key in ("verdict", "checks"):
        data.pop(key)
    turns = data.pop("turns")
    rebuilt = Transcript(
        **data,
        turns=[
            TurnRecord(
                **{
                    **tr,
                    "tool_calls": [ToolCallRecord(**c) for c in tr["tool_calls"]],
                    "checks": [CheckResult(**c) for c in tr["checks"]],
                }
            )
            for tr in turns
        ],
    )
    assert rebuilt == t


def test_json_keeps_unicode_readable() -> None:
    t = make_transcript(name="météo ✓")
    assert "météo ✓" in to_json(t)
    assert to_json(t).endswith("}\n")


# --- Markdown ----------------------------------------------------------------------------------------


def test_markdown_content() -> None:
    md = to_markdown(make_transcript())
    assert md.startswith("# weather — FAILED\n")
    assert "Checks the weather tool." in md
    assert "- spec: `specs/w.yaml`" in md
    assert "> What's the weather in Paris?" in md
    assert "> It is sunny in Paris.\n> Enjoy!" in md
    assert '`get_weather` arguments `{"city": "Paris", "days": 2}` → output `{"sky": "sunny"}`' in md
    assert "run `run_1`" in md and "status **completed**" in md and "42 ms" in md and "12 tokens" in md
    assert "| check | result | detail |" in md
    assert "| status: `completed` (implicit) | pass |" in md
    assert "| contains: `sunny` | pass |" in md
    assert "| contains: `rain` | **FAIL** |" in md
    assert "*Not run: the conversation stopped at an earlier turn.*" in md
    assert "> And tomorrow?" in md  # the skipped turn's user text still shown


def test_markdown_passed_heading() -> None:
    assert to_markdown(passing()).startswith("# ok — PASSED\n")


def test_markdown_runner_and_run_errors() -> None:
    md = to_markdown(erroring())
    assert md.startswith("# err — ERROR\n")
    assert "- backend: remote (http://h/v1)" in md
    assert "- error: turn 1: connection refused" in md
    assert "Runner error: connection refused" in md
    assert "no run" in md

    t = passing()
    t.turns[0].status = "failed"
    t.turns[0].last_error = {"code": "server_error", "message": "model exploded"}
    assert "Run error: server_error: model exploded" in to_markdown(t)


def test_markdown_escapes_pipes_in_check_reasons() -> None:
    t = passing()
    t.turns[0].checks.append(CheckResult("contains", "x", False, 'reply: "a | b"\nmore'))
    row = next(line for line in to_markdown(t).splitlines() if line.startswith("| contains"))
    assert "a \\| b" in row
    assert "more" in row


def test_markdown_escapes_pipes_in_check_args() -> None:
    t = passing()
    t.turns[0].checks.append(CheckResult("regex", "yes|no", False, "expected the reply to match /yes\\|no/"))
    row = next(line for line in to_markdown(t).splitlines() if line.startswith("| regex"))
    cells = re.split(r"(?<!\\)\|", row)
    assert len(cells) == 5  # "", name, result, detail, ""


def test_markdown_empty_reply_and_backticks() -> None:
    t = passing()
    t.turns[0].reply = ""
    t.turns[0].tool_calls = [ToolCallRecord("c", "f", "raw `args`", None)]
    md = to_markdown(t)
    assert "> *(empty)*" in md
    assert "`f` arguments `raw 'args'` → output `null`" in md


# --- console ---------------------------------------------------------------------------------------


def plain(text: str) -> str:
    return click.unstyle(text)


def test_conversation_line_pass() -> None:
    line = plain(conversation_line(passing()))
    assert line == "PASS  specs/ok.yaml  ok  (1 turn, 1 check, 3 ms)"


def test_conversation_line_fail_shows_where_reason_and_not_run_once() -> None:
    t = make_transcript()
    t.turns.append(TurnRecord(index=2, user="and after?", skipped=True))
    lines = plain(conversation_line(t)).splitlines()
    assert lines[0].startswith("FAIL  specs/w.yaml  weather  (1 turn, 3 checks, 55 ms)")
    assert lines[1] == (
        "      turn 1 contains [specs/w.yaml:10:19]: "
        'expected the reply to contain "rain"; reply: "It is sunny"'
    )
    assert sum("not run" in line for line in lines) == 1
    assert lines[2] == "      turn 2 and later: not run (the conversation stopped earlier)"
    assert len(lines) == 3


def test_conversation_line_error_shows_turn_error_not_implicit_status() -> None:
    lines = plain(conversation_line(erroring())).splitlines()
    assert lines[0].startswith("ERROR specs/err.yaml  err")
    assert "      turn 1: connection refused" in lines
    assert not any("status" in line for line in lines[1:])  # the implicit status failure is not repeated
    assert sum("not run" in line for line in lines) == 1
    assert not any("turn 1: turn 1:" in line for line in lines)  # the transcript error is not repeated
    assert len(lines) == 3


def test_conversation_line_setup_error_shown_once() -> None:
    t = Transcript(
        spec_file="specs/s.yaml",
        name="s",
        backend={"kind": "embedded"},
        model="nope",
        assistant=None,
        turns=[TurnRecord(index=0, user="hi", skipped=True)],
        error="creating the assistant: unknown model",
    )
    lines = plain(conversation_line(t)).splitlines()
    assert lines[0].startswith("ERROR specs/s.yaml  s  (0 turns, 0 checks")
    assert lines[1] == "      creating the assistant: unknown model"
    assert len(lines) == 2


def test_conversation_line_explicit_status_failure_shown_with_turn_error() -> None:
    t = erroring()
    t.turns[0].checks[0].implicit = False
    t.turns[0].checks[0].where = "specs/err.yaml:4:9"
    text = plain(conversation_line(t))
    assert "turn 1 status [specs/err.yaml:4:9]: expected the run to end completed" in text


def test_total_line_counts() -> None:
    failed = make_transcript()
    text = plain(total_line([passing(), passing("b"), failed], 1.234, "out"))
    assert text == "2 passed, 1 failed in 1.23s; transcripts in out/"
    text = plain(total_line([passing(), erroring()], 0.5, None))
    assert text == "1 passed, 0 failed, 1 error in 0.50s"
    text = plain(total_line([erroring(), erroring()], 0.5, None))
    assert "2 errors" in text


def test_total_line_colour() -> None:
    assert "\x1b[32m" in total_line([passing()], 0.1, None)  # green
    assert "\x1b[31m" in total_line([passing(), make_transcript()], 0.1, None)  # red


def test_stable_copy_numbers_ids_by_appearance_and_drops_timings() -> None:
    from runner.report.stable import stable_copy

    transcript = Transcript(
        spec_file="s.yaml", name="s", backend={"kind": "embedded"}, model="echo", assistant=None,
        assistant_id="asst_Zx9", thread_id="thread_Q1", started_at=1_795_000_000.5, duration_ms=12.3,
        turns=[TurnRecord(index=0, user="hi", reply="see run_B7 please", run_id="run_B7", latency_ms=4.2,
                          messages=[{"id": "msg_77", "text": "see run_B7 please"}],
                          tool_calls=[ToolCallRecord(id="call_a1", name="f", arguments={})],
                          checks=[CheckResult("max_latency_ms", 50, True, "expected at most 50 ms; it took 4.2 ms")]),
               TurnRecord(index=1, user="again", run_id="run_C8", latency_ms=9.9)],
    )
    stable = stable_copy(transcript)
    assert (stable.assistant_id, stable.thread_id) == ("asst_1", "thread_1")
    assert [t.run_id for t in stable.turns] == ["run_1", "run_2"]
    assert stable.turns[0].messages == [{"id": "msg_1", "text": "see run_B7 please"}]
    assert stable.turns[0].tool_calls[0].id == "call_1"
    assert stable.turns[0].reply == "see run_B7 please"  # what the assistant said is never rewritten
    assert stable.started_at == 0 and stable.duration_ms == 0 and stable.turns[0].latency_ms is None
    assert "4.2" not in stable.turns[0].checks[0].reason
    assert transcript.turns[0].run_id == "run_B7"  # the original is untouched


def test_a_conversations_files_appear_together_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both texts are written whole before either is named; a failure before the renames leaves neither
    file and no temporary one, and SIGTERM cannot come between the two renames."""
    import signal

    transcript = make_transcript()
    real_temporary = writers._temporary
    calls = {"n": 0}

    def second_fails(path: Path) -> tuple[int, str]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_temporary(path)

    monkeypatch.setattr(writers, "_temporary", second_fails)
    with pytest.raises(OSError):
        write_transcript(tmp_path, transcript)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.setattr(writers, "_temporary", real_temporary)

    seen: list[list[str]] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: seen.append(sorted(p.suffix for p in tmp_path.rglob("*.*")
                                                                         if not p.name.endswith(".tmp"))))
    real_replace = os.replace
    try:
        def replace_then_signal(src: str, dst: Any) -> None:
            real_replace(src, dst)
            if not seen and str(dst).endswith(".md"):
                os.kill(os.getpid(), signal.SIGTERM)  # held back until both files are in place

        monkeypatch.setattr(os, "replace", replace_then_signal)
        json_path, md_path = write_transcript(tmp_path, transcript)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [[".json", ".md"]]
    assert json_path.is_file() and md_path.is_file()


def test_a_lone_surrogate_is_written_as_the_replacement_character(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply holding a lone surrogate (valid JSON, "\\ud800") cannot be UTF-8: it is written as U+FFFD."""
    monkeypatch.chdir(tmp_path)
    t = make_transcript()
    t.turns[0].reply = "sunny \ud800 and \udfff"
    json_path, md_path = write_transcript(Path("out"), t)
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["turns"][0]["reply"] == "sunny \ufffd and \ufffd"
    assert "> sunny \ufffd and \ufffd" in md_path.read_text(encoding="utf-8")
    atomic_write(tmp_path / "x.txt", "a\ud800b")
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "a\ufffdb"
