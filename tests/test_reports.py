"""CI reports: JUnit XML (runner/report/junit.py), the JSON summary (summary.py) and transcript diffs (diff.py)."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from runner.report.diff import DiffResult, diff_dirs, format_diff
from runner.report.junit import to_junit, write_junit, xml_safe
from runner.report.summary import to_summary, write_summary
from runner.report.transcript import CheckResult, Transcript, TurnRecord
from runner.report.writers import write_transcript


def passing(name: str = "ok", spec: str = "specs/ok.yaml", reply: str = "hi") -> Transcript:
    turn = TurnRecord(index=0, user="hi", reply=reply, status="completed", latency_ms=1.0,
                      checks=[CheckResult("status", "completed", True, "fine", implicit=True),
                              CheckResult("contains", "hi", True, 'expected the reply to contain "hi"',
                                          f"{spec}:6:9")])
    return Transcript(spec_file=spec, name=name, backend={"kind": "embedded"}, model="echo", assistant=None,
                      turns=[turn], duration_ms=3.0, started_at=1_700_000_000.0)


def failing(name: str = "weather", spec: str = "specs/w.yaml") -> Transcript:
    turn0 = TurnRecord(
        index=0, user="Weather in Paris?", reply="It is sunny in Paris.", status="completed", latency_ms=42.0,
        checks=[
            CheckResult("status", "completed", True, "expected the run to end completed; it ended completed",
                        implicit=True),
            CheckResult("contains", "sunny", True, 'expected the reply to contain "sunny"', f"{spec}:9:19"),
            CheckResult("contains", "rain", False,
                        'expected the reply to contain "rain"; reply: "It is sunny in Paris."', f"{spec}:10:19"),
        ],
    )
    turn1 = TurnRecord(index=1, user="And tomorrow?", reply="Cloudy.", status="completed",
                       checks=[CheckResult("regex", "^Rain", False,
                                           'expected the reply to match /^Rain/; reply: "Cloudy."', f"{spec}:14:9")])
    return Transcript(spec_file=spec, name=name, backend={"kind": "embedded"}, model="scripted", assistant=None,
                      turns=[turn0, turn1], duration_ms=1500.0)


def erroring() -> Transcript:
    turn0 = TurnRecord(
        index=0, user="hi", error="connection refused", latency_ms=2.0,
        checks=[CheckResult("status", "completed", False,
                            "expected the run to end completed; it ended None (connection refused)", implicit=True)],
    )
    turn1 = TurnRecord(index=1, user="again", skipped=True)
    return Transcript(spec_file="specs/err.yaml", name="err", backend={"kind": "remote"}, model="gpt-x",
                      assistant=None, turns=[turn0, turn1], error="turn 1: connection refused")


def setup_error() -> Transcript:
    return Transcript(spec_file="specs/s.yaml", name="s", backend={"kind": "embedded"}, model="nope",
                      assistant=None, turns=[TurnRecord(index=0, user="hi", skipped=True)],
                      error="creating the assistant: unknown model")


HAS_CONVERSATION_CHECKS = "conversation_checks" in {f.name for f in dataclasses.fields(Transcript)}
needs_conversation_checks = pytest.mark.skipif(not HAS_CONVERSATION_CHECKS,
                                               reason="transcripts without checks on the whole conversation")


def with_conversation_check(t: Transcript, passed: bool) -> Transcript:
    setattr(t, "conversation_checks", [CheckResult("max_turns", 3, passed, "expected at most 3 turns; there were 2",  # noqa: B010
                                      f"{t.spec_file}:20:3")])
    return t


def parse(xml: str) -> ET.Element:
    return ET.fromstring(xml.encode("utf-8"))


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {c.get("name", ""): c for c in root.iter("testcase")}


# --- JUnit ---------------------------------------------------------------------------------------------


def test_junit_parses_and_counts() -> None:
    xml = to_junit([passing(), failing(), erroring(), passing("b", "specs/b.yaml")], 2.5)
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = parse(xml)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "runner"
    for element in (root, suite):
        assert (element.get("tests"), element.get("failures"), element.get("errors"), element.get("skipped"),
                element.get("time")) == ("4", "1", "1", "0", "2.500")
    assert len(suite.findall("testcase")) == 4
    assert suite.get("timestamp") == "2023-11-14T22:13:20"


def test_junit_testcase_attributes() -> None:
    root = parse(to_junit([passing(spec="./specs/sub/greet.v1.yaml"), failing()], 1.0))
    ok, weather = cases(root)["ok"], cases(root)["weather"]
    assert ok.get("classname") == "specs.sub.greet.v1"
    assert ok.get("file") == "./specs/sub/greet.v1.yaml"
    assert ok.get("time") == "0.003"
    assert list(ok) == []  # a passed case has no child
    assert weather.get("classname") == "specs.w"
    assert weather.get("time") == "1.500"
    assert weather.get("line") == "10"  # the first failed check's line, for annotations


def test_junit_failure_lists_every_failed_check() -> None:
    root = parse(to_junit([failing()], 1.0, transcript_paths={"specs/w.yaml": Path("transcripts/specs/w.json")}))
    case = cases(root)["weather"]
    assert case.find("error") is None
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "check"
    assert failure.get("message") == ('turn 1 contains [specs/w.yaml:10:19]: expected the reply to contain "rain"; '
                                      'reply: "It is sunny in Paris."')
    body = (failure.text or "").splitlines()
    assert body == [
        'turn 1 contains [specs/w.yaml:10:19]: expected the reply to contain "rain"; reply: "It is sunny in Paris."',
        'turn 2 regex [specs/w.yaml:14:9]: expected the reply to match /^Rain/; reply: "Cloudy."',
        "transcript: transcripts/specs/w.json",
    ]


def test_junit_error_verdict_becomes_error() -> None:
    root = parse(to_junit([erroring(), setup_error()], 1.0))
    err = cases(root)["err"]
    assert err.find("failure") is None
    error = err.find("error")
    assert error is not None
    assert error.get("message") == "turn 1: connection refused"
    body = error.text or ""
    assert "turn 1: connection refused" in body
    # the implicit status check only repeats the turn's error, so it is not listed again
    assert "turn 1 status:" not in body
    assert "turn 2 and later: not run (the conversation stopped earlier)" in body
    assert "transcript:" not in body

    setup = cases(root)["s"].find("error")
    assert setup is not None
    assert setup.get("message") == "creating the assistant: unknown model"
    assert (setup.text or "").splitlines() == [
        "creating the assistant: unknown model",
        "turn 1 and later: not run (the conversation stopped earlier)",
    ]


def test_junit_strips_forbidden_characters() -> None:
    t = failing(name="bad\x00na\x1bme\ufffe")
    t.turns[0].checks[2].reason = 'reply: "a\x07b\x0c\tc\nd\ud800"'
    xml = to_junit([t], 1.0)
    for char in ("\x00", "\x1b", "\x07", "\x0c", "\ufffe", "\ud800"):
        assert char not in xml
    root = parse(xml)  # a forbidden character would make this raise
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == "badname"
    failure = case.find("failure")
    assert failure is not None
    assert 'reply: "ab\tc\nd"' in (failure.text or "")
    assert "\n" not in (failure.get("message") or "")  # the message is one line
    assert xml_safe("ok\t\n\r✓𝄞") == "ok\t\n\r✓𝄞"


def test_junit_names_with_quotes_ampersands_and_chinese_survive() -> None:
    name = '问候 "quoted" & <tagged> \'single\''
    t = failing(name=name, spec="specs/中文/问候.yaml")
    t.turns[0].checks[2].reason = 'expected the reply to contain "雨 & <rain>"; reply: "晴"'
    xml = to_junit([t], 1.0)
    case = parse(xml).find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == name
    assert case.get("classname") == "specs.中文.问候"
    assert case.get("file") == "specs/中文/问候.yaml"
    failure = case.find("failure")
    assert failure is not None
    assert 'expected the reply to contain "雨 & <rain>"; reply: "晴"' in (failure.get("message") or "")
    assert 'expected the reply to contain "雨 & <rain>"; reply: "晴"' in (failure.text or "")


def test_junit_long_message_is_cut_but_body_is_whole() -> None:
    t = failing()
    t.turns[0].checks[2].reason = "x" * 2000
    failure = parse(to_junit([t], 1.0)).find("testsuite/testcase/failure")
    assert failure is not None
    assert len(failure.get("message") or "") == 500
    assert "x" * 2000 in (failure.text or "")


@needs_conversation_checks
def test_junit_and_summary_show_failed_conversation_checks() -> None:
    t = with_conversation_check(passing(), passed=False)
    failure = parse(to_junit([t], 1.0)).find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == "conversation max_turns [specs/ok.yaml:20:3]: expected at most 3 turns; there were 2"
    (conv,) = to_summary([t], 1.0)["conversations"]
    assert conv["checks"] == {"passed": 2, "failed": 1, "not_judged": 0}
    assert conv["failures"] == [{"turn": None, "kind": "check", "check": "max_turns", "where": "specs/ok.yaml:20:3",
                                 "reason": "expected at most 3 turns; there were 2"}]


def test_junit_empty_run() -> None:
    root = parse(to_junit([], 0.0))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "0" and suite.get("timestamp") is None


def test_write_junit(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "junit.xml"
    write_junit(target, [passing(), failing()], 1.0, {"specs/w.yaml": Path("out/specs/w.json")})
    text = target.read_text(encoding="utf-8")
    assert text == to_junit([passing(), failing()], 1.0, transcript_paths={"specs/w.yaml": Path("out/specs/w.json")})
    assert "transcript: out/specs/w.json" in text
    assert [p.name for p in target.parent.iterdir()] == ["junit.xml"]


# --- summary -------------------------------------------------------------------------------------------


def test_summary_totals() -> None:
    summary = to_summary([passing(), failing(), erroring(), setup_error()], 3.14159)
    assert summary["version"] == 1
    assert summary["totals"] == {
        "conversations": 4, "passed": 1, "failed": 1, "errors": 2,
        "checks": {"passed": 4, "failed": 3, "not_judged": 0}, "seconds": 3.142,
    }
    json.dumps(summary)  # JSON-ready


def test_summary_conversations_and_failures() -> None:
    ok, weather, err, setup = to_summary([passing(), failing(), erroring(), setup_error()], 1.0)["conversations"]
    assert ok == {"spec_file": "specs/ok.yaml", "name": "ok", "verdict": "passed", "turns": 1, "turns_run": 1,
                  "checks": {"passed": 2, "failed": 0, "not_judged": 0}, "duration_ms": 3.0, "error": None, "failures": []}
    assert weather["verdict"] == "failed"
    assert weather["turns_run"] == 2 and weather["checks"] == {"passed": 2, "failed": 2, "not_judged": 0}
    assert weather["duration_ms"] == 1500.0
    assert weather["failures"] == [
        {"turn": 1, "kind": "check", "check": "contains", "where": "specs/w.yaml:10:19",
         "reason": 'expected the reply to contain "rain"; reply: "It is sunny in Paris."'},
        {"turn": 2, "kind": "check", "check": "regex", "where": "specs/w.yaml:14:9",
         "reason": 'expected the reply to match /^Rain/; reply: "Cloudy."'},
    ]
    assert err["verdict"] == "error" and err["error"] == "turn 1: connection refused"
    assert err["turns"] == 2 and err["turns_run"] == 1
    assert [(f["turn"], f["kind"], f["check"]) for f in err["failures"]] == [
        (1, "error", None), (2, "not_run", None)]
    assert err["failures"][0]["reason"] == "connection refused"
    assert err["failures"][1]["where"] is None  # an implicit check has no place in the spec
    assert setup["turns_run"] == 0
    assert setup["failures"] == [{"turn": 1, "kind": "not_run", "check": None, "where": None,
                                  "reason": "not run (the conversation stopped earlier)"}]


def test_write_summary(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_summary(target, [passing(name="问候 & co")], 0.5)
    text = target.read_text(encoding="utf-8")
    assert "问候 & co" in text  # readable, not \u-escaped
    assert text.endswith("}\n") and "\n  " in text
    assert json.loads(text) == to_summary([passing(name="问候 & co")], 0.5)


# --- diff ----------------------------------------------------------------------------------------------


def write_all(out: Path, transcripts: list[Transcript]) -> None:
    for t in transcripts:
        write_transcript(out, t, stable=True)


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    return Path("old"), Path("new")


def by_spec(result: DiffResult) -> dict[str, Any]:
    return {c.spec_file: c for c in result.conversations}


def test_diff_identical_folders_unchanged(folders: tuple[Path, Path]) -> None:
    old, new = folders
    write_all(old, [passing(), failing()])
    rerun = passing()
    rerun.duration_ms, rerun.started_at = 99.0, 1.0  # timings are not compared
    write_all(new, [rerun, failing()])
    result = diff_dirs(old, new)
    assert not result.changed
    assert [c.status for c in result.conversations] == ["unchanged", "unchanged"]
    assert format_diff(result) == "0 changed, 2 unchanged, 0 added, 0 removed"


def test_diff_verdict_reply_added_removed(folders: tuple[Path, Path]) -> None:
    old, new = folders
    write_all(old, [passing(), failing(), passing("gone", "specs/gone.yaml"), passing("same", "specs/same.yaml")])
    now_passing = failing()
    now_passing.turns[0].reply = "It will rain in Paris.\nTake an umbrella."
    for turn in now_passing.turns:
        for check in turn.checks:
            check.passed = True
    write_all(new, [passing(reply="hello there"), now_passing, passing("fresh", "specs/fresh.yaml"),
                    passing("same", "specs/same.yaml")])
    result = diff_dirs(old, new)
    assert result.changed
    convs = by_spec(result)
    assert convs["specs/same.yaml"].status == "unchanged"
    assert convs["specs/gone.yaml"].status == "removed" and convs["specs/gone.yaml"].old_verdict == "passed"
    assert convs["specs/fresh.yaml"].status == "added" and convs["specs/fresh.yaml"].new_verdict == "passed"

    weather = convs["specs/w.yaml"]
    assert weather.status == "changed" and weather.verdict_changed
    assert (weather.old_verdict, weather.new_verdict) == ("failed", "passed")
    assert weather.path == "specs/w.json"
    assert [r.turn for r in weather.replies] == [1]
    assert weather.replies[0].diff == ["@@ -1 +1,2 @@", "-It is sunny in Paris.", "+It will rain in Paris.",
                                       "+Take an umbrella."]
    assert weather.checks == ['turn 1 contains "rain": failed -> passed', 'turn 2 regex "^Rain": failed -> passed']

    ok = convs["specs/ok.yaml"]
    assert ok.status == "changed" and not ok.verdict_changed
    assert [r.turn for r in ok.replies] == [1] and ok.replies[0].diff[1:] == ["-hi", "+hello there"]

    text = format_diff(result)
    lines = text.splitlines()
    assert lines[-1] == "2 changed, 1 unchanged, 1 added, 1 removed"
    assert "+ specs/fresh.yaml  fresh  (new, passed)" in lines
    assert "- specs/gone.yaml  gone  (was passed)" in lines
    assert "~ specs/ok.yaml  ok  (reply changed in turn 1)" in lines
    assert "~ specs/w.yaml  weather  (failed -> passed; 2 checks changed; reply changed in turn 1)" in lines
    assert "    turn 1 reply:" in lines
    assert "      -It is sunny in Paris." in lines and "      +It will rain in Paris." in lines
    assert "same" not in text


def test_diff_check_flip_with_same_verdict_is_a_change(folders: tuple[Path, Path]) -> None:
    old, new = folders
    write_all(old, [failing()])
    other = failing()
    other.turns[0].checks[2].passed = True  # still failed, by turn 2 only
    write_all(new, [other])
    result = diff_dirs(old, new)
    (weather,) = result.conversations
    assert weather.status == "changed" and not weather.verdict_changed and weather.replies == []
    assert weather.checks == ['turn 1 contains "rain": failed -> passed']
    assert result.changed


@needs_conversation_checks
def test_diff_conversation_check_flip(folders: tuple[Path, Path]) -> None:
    old, new = folders
    write_all(old, [with_conversation_check(passing(), passed=True)])
    write_all(new, [with_conversation_check(passing(), passed=False)])
    (ok,) = diff_dirs(old, new).conversations
    assert ok.verdict_changed and ok.checks == ["conversation max_turns 3: passed -> failed"]


def test_diff_long_reply_diff_is_cut(folders: tuple[Path, Path]) -> None:
    old, new = folders
    write_all(old, [passing(reply="\n".join(f"line {i}" for i in range(40)))])
    write_all(new, [passing(reply="\n".join(f"LINE {i}" for i in range(40)))])
    (reply,) = diff_dirs(old, new).conversations[0].replies
    assert len(reply.diff) == 12 and reply.diff[-1] == "… 70 more lines"


def test_diff_reports_corrupt_and_foreign_json(folders: tuple[Path, Path]) -> None:
    old, new = folders
    write_all(old, [passing(), failing()])
    write_all(new, [passing(), failing()])
    (new / "specs" / "w.json").write_text('{"version": 1, "name": "weath', encoding="utf-8")  # cut short
    (new / "specs" / "latin.json").write_bytes(b'{"name": "caf\xe9"}')
    (new / "summary.json").write_text('{"totals": {}}', encoding="utf-8")
    result = diff_dirs(old, new)
    problems = {(p.path, p.side, p.kind) for p in result.problems}
    assert problems == {("specs/w.json", "new", "unreadable"), ("specs/latin.json", "new", "unreadable"),
                        ("summary.json", "new", "not a transcript")}
    assert [c.spec_file for c in result.conversations] == ["specs/ok.yaml"]  # w.json: not compared, not "removed"
    assert result.changed  # an unreadable transcript may hide a change
    lines = format_diff(result).splitlines()
    assert any(line.startswith("! specs/w.json (new): unreadable: JSONDecodeError:") for line in lines)
    assert "! summary.json (new): not a transcript: not a transcript (no spec_file, name, verdict and turns)" in lines
    assert lines[-1] == "0 changed, 1 unchanged, 0 added, 0 removed, 2 unreadable"


def test_diff_foreign_json_alone_is_not_a_change(folders: tuple[Path, Path]) -> None:
    old, new = folders
    write_all(old, [passing()])
    write_all(new, [passing()])
    (new / "summary.json").write_text("[1, 2]", encoding="utf-8")
    result = diff_dirs(old, new)
    assert not result.changed
    assert format_diff(result).splitlines()[-1] == "0 changed, 1 unchanged, 0 added, 0 removed"


def test_diff_needs_folders(tmp_path: Path) -> None:
    (tmp_path / "file.json").write_text("{}", encoding="utf-8")
    with pytest.raises(NotADirectoryError):
        diff_dirs(tmp_path, tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        diff_dirs(tmp_path / "file.json", tmp_path)


def test_a_turn_that_ended_in_an_error_shows_the_error_first_and_judges_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A timed-out turn has no reply: its checks are not judged (never `contains ... reply: ""`), and the
    console shows the cause on the first line after the conversation's."""
    from click.testing import CliRunner

    from runner.cli import cli

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "slow.yaml"
    spec.write_text(
        "assistant: {model: scripted}\n"
        "backend: {rules: [{user: hi, reply: hello, delay_ms: 3000}]}\n"
        "expect: [{not_contains: sorry}]\n"
        "conversation:\n"
        "  - user: hi\n"
        "    expect: [{contains: hello}, {regex: '^h'}]\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "slow.yaml", "--timeout", "0.3", "--out", str(tmp_path / "out"),
                                      "--summary", str(tmp_path / "s.json")])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("ERROR")
    assert lines[1] == "      turn 1: the backend did not finish within 0.3 s (--timeout)"
    assert lines[2] == "      turn 1: 2 checks not judged (contains, regex): the error above came first"
    assert lines[3] == ("      conversation: 1 check not judged (not_contains): the error above came first")
    assert 'reply: ""' not in result.output
    data = json.loads((tmp_path / "out" / "slow.json").read_text(encoding="utf-8"))
    assert data["checks"] == {"passed": 0, "failed": 0, "not_judged": 4}
    assert all(not c["judged"] for c in data["turns"][0]["checks"])
    summary = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert [f["kind"] for f in summary["conversations"][0]["failures"]] == ["error"]
    markdown = (tmp_path / "out" / "slow.md").read_text(encoding="utf-8")
    assert "| not judged |" in markdown and "**FAIL**" not in markdown
