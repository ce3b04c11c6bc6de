"""Console reporting: a live bar on a terminal, lines when piped or in CI, --quiet and --json."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.report.progress import Reporter, choose_mode
from runner.report.transcript import CheckResult, Transcript, TurnRecord


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mode_follows_the_terminal_and_ci() -> None:
    assert choose_mode(quiet=False, json_output=False, stream=Tty(), environ={}) == "live"
    assert choose_mode(quiet=False, json_output=False, stream=Tty(), environ={"CI": "true"}) == "lines"
    assert choose_mode(quiet=False, json_output=False, stream=io.StringIO(), environ={}) == "lines"
    assert choose_mode(quiet=True, json_output=False, stream=Tty(), environ={}) == "quiet"
    assert choose_mode(quiet=False, json_output=True, stream=Tty(), environ={}) == "quiet"


def _transcript(name: str, passed: bool) -> Transcript:
    check = CheckResult("contains", "x", passed, "expected the reply to contain \"x\"; reply: \"y\"", "s.yaml:3:5")
    return Transcript(spec_file=f"{name}.yaml", name=name, backend={"kind": "embedded"}, model="echo",
                      assistant=None, duration_ms=12.0,
                      turns=[TurnRecord(index=0, user="hi", reply="y", status="completed", checks=[check])])


def test_live_mode_shows_failures_a_table_and_the_total() -> None:
    from rich.console import Console

    console = Console(record=True, force_terminal=True, width=120)
    reporter = Reporter("live", 3, console=console)
    for name, passed in (("one", True), ("two", False), ("three", True)):
        reporter.finished(_transcript(name, passed), running=0)
    reporter.close(1.5, "transcripts")
    text = console.export_text()
    assert "FAIL  two.yaml  two" in text and 'expected the reply to contain "x"' in text
    assert "PASS  one.yaml" not in text  # passes only move the bar
    assert "verdict" in text and "2 passed, 1 failed in 1.50s" in text


def test_live_mode_labels_the_eta_and_names_cases_in_the_slowest() -> None:
    import dataclasses

    from rich.console import Console

    console = Console(record=True, force_terminal=True, width=200)
    reporter = Reporter("live", 4, console=console)
    for i, case in enumerate(("lang=fr,repeat=1", "lang=fr,repeat=2", "lang=de,repeat=1", "")):
        transcript = dataclasses.replace(_transcript("greet", True), case=case, duration_ms=10.0 + i)
        transcript.name = f"greet[{case}]" if case else "greet"
        reporter.finished(transcript, running=0)
    columns = [getattr(c, "text_format", "") for c in reporter._progress.columns]
    assert "ETA" in columns
    reporter.close(1.0, "transcripts")
    text = console.export_text()
    assert "slowest: greet (13 ms), greet[lang=de,repeat=1] (12 ms), greet[lang=fr,repeat=2] (11 ms)" in text


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for i, expect in enumerate(("[]", "[{contains: never}]")):
        (tmp_path / f"c{i}.yaml").write_text(f"name: conv-{i}\nassistant: {{model: echo}}\n"
                                             f"conversation: [{{user: hi, expect: {expect}}}]\n", encoding="utf-8")
    return tmp_path


def test_quiet_prints_failures_and_the_total_only(suite: Path) -> None:
    result = CliRunner().invoke(cli, ["run", ".", "--quiet"])
    assert result.exit_code == 1
    assert "PASS" not in result.output and "FAIL  c1.yaml  conv-1" in result.output
    assert "1 passed, 1 failed" in result.output


def test_json_puts_only_json_on_stdout(suite: Path) -> None:
    result = CliRunner().invoke(cli, ["run", ".", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["totals"]["passed"] == 1 and data["totals"]["failed"] == 1
    assert [c["verdict"] for c in data["conversations"]] == ["passed", "failed"]
    assert "FAIL" in result.stderr
