"""`--last-failed` and `--failed-first`, as pytest's: the failing conversations remembered in the output folder,
run alone or first, forgotten once they pass, kept while they do not run; repeats count as one conversation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.lastfailed import CACHE, conversation_key, load

PASSING = "assistant: {model: echo}\nconversation: [{user: hello, expect: [{contains: hello}]}]\n"
FAILING = "assistant: {model: echo}\nconversation: [{user: hello, expect: [{contains: goodbye}]}]\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "specs").mkdir()
    for name, body in (("a.yaml", PASSING), ("b.yaml", FAILING), ("c.yaml", PASSING), ("d.yaml", FAILING)):
        (tmp_path / "specs" / name).write_text(body, encoding="utf-8")
    return tmp_path


def _run(*args: str) -> tuple[Any, list[str]]:
    """`runner run specs --json ARGS`: the result and the spec files that ran, in the order reported."""
    result = CliRunner().invoke(cli, ["run", "specs", "--json", "-j", "1", *args])
    summary = json.loads(result.stdout)
    return result, [c["spec_file"] for c in summary["conversations"]]


def test_only_the_failures_run_again_until_they_pass(project: Path) -> None:
    first, ran = _run()
    assert first.exit_code == 1 and len(ran) == 4
    assert load(project / "transcripts").failed == {"specs/b.yaml", "specs/d.yaml"}
    again, ran = _run("--lf")
    assert ran == ["specs/b.yaml", "specs/d.yaml"] and again.exit_code == 1
    assert "running the 2 runs that failed last time (of 4)" in again.stderr
    (project / "specs" / "b.yaml").write_text(PASSING, encoding="utf-8")
    fixed, ran = _run("--lf")
    assert ran == ["specs/b.yaml", "specs/d.yaml"]
    assert load(project / "transcripts").failed == {"specs/d.yaml"}  # b passed: forgotten
    (project / "specs" / "d.yaml").write_text(PASSING, encoding="utf-8")
    assert _run("--lf")[0].exit_code == 0
    everything, ran = _run("--lf")  # nothing failing any more: all of them, as pytest does
    assert len(ran) == 4 and "no failures remembered among these 4 runs: running all" in everything.stderr


def test_failures_first_then_the_rest_in_their_order(project: Path) -> None:
    _run()
    result, ran = _run("--ff")
    assert ran == ["specs/b.yaml", "specs/d.yaml", "specs/a.yaml", "specs/c.yaml"]
    assert "running the 2 that failed last time first, then the other 2" in result.stderr


def test_a_narrowed_run_keeps_the_failures_it_did_not_run(project: Path) -> None:
    _run()
    (project / "specs" / "b.yaml").write_text(PASSING, encoding="utf-8")
    _, ran = _run("--lf", "-k", "b")
    assert ran == ["specs/b.yaml"]
    assert load(project / "transcripts").failed == {"specs/d.yaml"}  # d did not run: still remembered


def test_repeats_are_one_conversation(project: Path) -> None:
    (project / "specs" / "d.yaml").unlink()
    _run("--repeat", "2")
    assert load(project / "transcripts").failed == {"specs/b.yaml"}
    _, ran = _run("--lf", "--repeat", "2")
    assert ran == ["specs/b.yaml", "specs/b.yaml"]  # both runs of it
    assert conversation_key("x.yaml", "lang=fr,repeat=2") == "x.yaml[lang=fr]"
    assert conversation_key("x.yaml", "repeat=1") == "x.yaml"


def test_an_unreadable_memory_is_said_and_written_again(project: Path) -> None:
    _run()
    cache = project / "transcripts" / CACHE
    cache.write_text("{not json", encoding="utf-8")
    result, ran = _run("--lf")
    assert len(ran) == 4 and f"cannot read transcripts/{CACHE}" in result.stderr
    assert load(project / "transcripts").failed == {"specs/b.yaml", "specs/d.yaml"}
    cache.write_text(json.dumps({"version": 99, "failed": []}), encoding="utf-8")
    assert "not a failure list this version writes" in _run("--ff")[0].stderr


def test_the_memory_is_no_transcript_to_the_folders_readers(project: Path) -> None:
    _run("-o", "one")
    _run("-o", "two")
    assert (project / "one" / CACHE).is_file()
    result = CliRunner().invoke(cli, ["diff", "one", "two"])
    assert result.exit_code == 0, result.output
    assert "lastfailed" not in result.output


def test_odd_entries_are_no_failures_and_a_folder_in_the_way_is_named(project: Path) -> None:
    _run()
    cache = project / "transcripts" / CACHE
    cache.write_text(json.dumps({"version": 1, "failed": [{"a": 1}, None, 5, "specs/b.yaml"]}), encoding="utf-8")
    _, ran = _run("--lf")
    assert ran == ["specs/b.yaml"]
    cache.unlink()
    cache.mkdir()
    result, ran = _run("--lf")
    assert len(ran) == 4 and "is a folder, not the file that remembers the failures: remove it" in result.stderr
