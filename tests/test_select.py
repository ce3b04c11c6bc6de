"""Choosing conversations: -k expressions, tags, deterministic shards; stopping early on failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.select import SelectionError, keyword_matcher, parse_shard, select, shard_of
from runner.spec import Spec, Turn


def spec(name: str, file: str, tags: tuple[str, ...] = ()) -> Spec:
    return Spec(file=file, name=name, turns=(Turn(0, "hi"),), tags=tags)


@pytest.mark.parametrize(("expression", "matches"), [
    ("weather", ["weather-paris", "Weather-Oslo"]),
    ("weather and not oslo", ["weather-paris"]),
    ("greet or oslo", ["Weather-Oslo", "greeting"]),  # in suite order
    ("not (weather or greet)", ["billing"]),
    ("specs/b", ["billing"]),  # the spec's path counts too
])
def test_keyword_expressions(expression: str, matches: list[str]) -> None:
    specs = [spec("weather-paris", "specs/a/w1.yaml"), spec("Weather-Oslo", "specs/a/w2.yaml"),
             spec("greeting", "specs/a/g.yaml"), spec("billing", "specs/b/x.yaml")]
    assert [s.name for s in select(specs, keyword=expression)] == matches


@pytest.mark.parametrize("bad", ["", "weather and", "(weather", "or x", "a )"])
def test_bad_keyword_expressions_say_why(bad: str) -> None:
    with pytest.raises(SelectionError):
        keyword_matcher(bad)


def test_tags_and_shards() -> None:
    specs = [spec(f"c{i}", f"specs/c{i}.yaml", ("smoke",) if i % 3 == 0 else ()) for i in range(60)]
    assert [s.name for s in select(specs, tags=("smoke",))] == [f"c{i}" for i in range(0, 60, 3)]
    shards = [select(specs, shard=(k, 4)) for k in range(1, 5)]
    assert sorted(s.name for part in shards for s in part) == sorted(s.name for s in specs)  # each exactly once
    assert all(part for part in shards)  # 60 conversations spread over all 4
    assert shard_of(specs[7], 4) == shard_of(spec("other name", "specs/c7.yaml"), 4)  # by path: stable
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "a/b", "2"):
        with pytest.raises(SelectionError):
            parse_shard(bad)


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    for i in range(6):
        expect = "[{contains: never}]" if i in (1, 2) else "[]"
        (tmp_path / f"c{i}.yaml").write_text(
            f"name: conv-{i}\ntags: [{'even' if i % 2 == 0 else 'odd'}]\nassistant: {{model: echo}}\n"
            f"conversation: [{{user: hi, expect: {expect}}}]\n", encoding="utf-8")
    return tmp_path


def test_cli_selection(suite: Path) -> None:
    result = CliRunner().invoke(cli, ["run", ".", "-k", "conv-1 or conv-3", "--summary", "s.json"])
    names = [c["name"] for c in json.loads((suite / "s.json").read_text())["conversations"]]
    assert result.exit_code == 1 and names == ["conv-1", "conv-3"]
    result = CliRunner().invoke(cli, ["run", ".", "--tag", "even", "--summary", "s.json"])
    names = [c["name"] for c in json.loads((suite / "s.json").read_text())["conversations"]]
    assert result.exit_code == 1 and names == ["conv-0", "conv-2", "conv-4"]  # conv-2 fails
    parts = []
    for k in (1, 2, 3):
        CliRunner().invoke(cli, ["run", ".", "--shard", f"{k}/3", "--summary", f"s{k}.json"])
        parts += [c["name"] for c in json.loads((suite / f"s{k}.json").read_text())["conversations"]]
    assert sorted(parts) == [f"conv-{i}" for i in range(6)]

def test_a_selection_that_matches_nothing_is_a_usage_error(suite: Path) -> None:
    none = CliRunner().invoke(cli, ["run", ".", "-k", "nothing-like-this"])
    assert none.exit_code == 2
    assert "-k 'nothing-like-this' selects none of the 6 conversations; nothing was run" in none.output
    tag = CliRunner().invoke(cli, ["run", ".", "--tag", "smoke"])
    assert tag.exit_code == 2
    assert "--tag smoke selects none of the 6 conversations (tags in these specs: even, odd)" in tag.output
    assert not (suite / "transcripts").exists()


def test_an_empty_shard_is_not_a_failure(suite: Path) -> None:
    # 6 conversations over 40 machines: most shards are empty, and that is how the suite is split
    empty = next(k for k in range(1, 41) if CliRunner().invoke(cli, ["run", ".", "--shard", f"{k}/40"]).output
                 .startswith(f"shard {k}/40 holds none"))
    result = CliRunner().invoke(cli, ["run", ".", "--shard", f"{empty}/40", "-k", "conv"])
    assert result.exit_code == 0 and f"shard {empty}/40 holds none of the 6 conversations" in result.output


def test_shard_syntax(suite: Path) -> None:
    bad = CliRunner().invoke(cli, ["run", ".", "--shard", "4/3"])
    assert bad.exit_code == 2 and "expected K/N" in bad.output


def test_fail_fast_starts_nothing_after_a_failure(suite: Path) -> None:
    result = CliRunner().invoke(cli, ["run", ".", "-j", "1", "--fail-fast"])
    assert result.exit_code == 1
    assert "stopped after 1 failure: 4 conversations not run" in result.output
    assert len(list((suite / "transcripts").glob("*.json"))) == 2  # c0 passed, c1 failed, then nothing
    result = CliRunner().invoke(cli, ["run", ".", "-j", "1", "--max-failures", "2", "-o", "t2"])
    assert "stopped after 2 failures: 3 conversations not run" in result.output
