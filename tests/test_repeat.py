"""--repeat N runs each conversation N times; --min-pass-rate decides a flaky conversation's verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli

FLAKY = '''
calls = {"n": 0}

def first_call_fails(reply, turn):
    calls["n"] += 1
    return calls["n"] > 1, f"call {calls['n']}"
'''


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "flakychecks.py").write_text(FLAKY, encoding="utf-8")
    (tmp_path / "flaky.yaml").write_text("name: flaky\nassistant: {model: echo}\n"
                                         "conversation: [{user: hi, expect: [{python: 'flakychecks:first_call_fails'}]}]\n",
                                         encoding="utf-8")
    (tmp_path / "steady.yaml").write_text("name: steady\nassistant: {model: echo}\nconversation: [{user: hi}]\n",
                                          encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _fresh_module() -> None:
    import sys

    sys.modules.pop("flakychecks", None)  # each CLI run starts its counter at zero


def test_repeats_get_their_own_transcripts_and_a_pass_rate(suite: Path) -> None:
    _fresh_module()
    result = CliRunner().invoke(cli, ["run", ".", "--repeat", "3", "-j", "1", "--summary", "s.json"])
    assert result.exit_code == 1  # flaky passed 2 of 3; by default every run must pass
    assert "FAIL  flaky: 2/3 runs passed (67%; needs 100%)" in click_unstyle(result.output)
    assert "PASS  steady: 3/3 runs passed (100%; needs 100%)" in click_unstyle(result.output)
    names = sorted(p.name for p in (suite / "transcripts").glob("*.json"))
    assert names == [f"{n}[repeat={r}].json" for n in ("flaky", "steady") for r in (1, 2, 3)]
    assert len(json.loads((suite / "s.json").read_text())["conversations"]) == 6


def test_min_pass_rate_accepts_a_flaky_conversation(suite: Path) -> None:
    _fresh_module()
    result = CliRunner().invoke(cli, ["run", ".", "--repeat", "3", "-j", "1", "--min-pass-rate", "0.6", "-o", "t2"])
    assert result.exit_code == 0, result.output
    assert "PASS  flaky: 2/3 runs passed (67%; needs 60%)" in click_unstyle(result.output)


def test_with_repeats_the_verdict_comes_first_and_failing_runs_are_folded(suite: Path) -> None:
    _fresh_module()
    result = CliRunner().invoke(cli, ["run", ".", "--repeat", "3", "-j", "1", "--min-pass-rate", "0.6", "-o", "t3"])
    lines = click_unstyle(result.output).splitlines()
    assert not any(line.startswith("FAIL  ./flaky.yaml") or line.startswith("FAIL  flaky.yaml") for line in lines)
    at = lines.index("PASS  flaky: 2/3 runs passed (67%; needs 60%)")
    assert lines[at + 1] == "      1 failing run (repeat 1)"
    assert lines[at + 2].startswith("      first, repeat 1: turn 1 python [") and "call 1" in lines[at + 2]
    assert lines[-1].startswith("2 passed, 0 failed by pass rate (6 runs: 5 passed, 1 failed) in ")


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)
