"""Matrices: a spec's `matrix:` crossed into cases, each its own conversation, transcript and report entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.spec import SpecInvalid, load_cases
from runner.spec.load import case_id, matrix_cases

SPEC = """
name: greet
assistant: {model: echo, instructions: "Speak {{ lang }}."}
vars: {lang: en, tone: plain, who: Ada}
matrix:
  lang: [en, fr]
  tone: [formal, casual]
  exclude: [{lang: fr, tone: casual}]
  include: [{lang: de, tone: formal}]
conversation:
  - user: "{{ tone }} hello in {{ lang }} to {{ who }}"
    expect: [{contains: "in {{ lang }}"}]
"""


def test_matrix_cases_cross_exclude_and_include() -> None:
    cases = matrix_cases({"lang": ["en", "fr"], "tone": ["formal", "casual"],
                          "exclude": [{"lang": "fr", "tone": "casual"}], "include": [{"lang": "de", "tone": "formal"},
                                                                                      {"lang": "en", "tone": "formal"}]})
    assert cases == [{"lang": "en", "tone": "formal"}, {"lang": "en", "tone": "casual"},
                     {"lang": "fr", "tone": "formal"}, {"lang": "de", "tone": "formal"}]  # a repeated include is one case
    assert case_id(cases[0]) == "lang=en,tone=formal" and case_id({}) == ""
    assert matrix_cases({"include": [{"x": 1}]}) == [{"x": 1}]


def test_each_case_renders_with_its_values(write_spec) -> None:  # type: ignore[no-untyped-def]
    specs = load_cases(write_spec(SPEC), {"who": "Grace"})
    assert [s.label for s in specs] == ["greet[lang=en,tone=formal]", "greet[lang=en,tone=casual]",
                                        "greet[lang=fr,tone=formal]", "greet[lang=de,tone=formal]"]
    assert [s.turns[0].user for s in specs][2] == "formal hello in fr to Grace"  # case over vars, --var over all
    assert specs[3].assistant is not None and specs[3].assistant.instructions == "Speak de."
    assert specs[2].turns[0].expect[0].arg == "in fr"


def test_a_problem_shared_by_every_case_is_reported_once(write_spec) -> None:  # type: ignore[no-untyped-def]
    path = write_spec("assistant: {model: echo}\nmatrix: {lang: [en, fr, de]}\n"
                      "conversation: [{user: '{{ lang }} {{ missing }}'}]\n")
    with pytest.raises(SpecInvalid) as info:
        load_cases(path)
    assert len(info.value.errors) == 1 and "'missing' is undefined" in info.value.errors[0].message
    empty = write_spec("assistant: {model: echo}\nmatrix: {lang: [en], exclude: [{lang: en}]}\n"
                       "conversation: [{user: hi}]\n", "empty.yaml")
    with pytest.raises(SpecInvalid, match="the matrix has no cases left"):
        load_cases(empty)


def test_cases_run_as_conversations_with_their_own_transcripts(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "greet.yaml").write_text(SPEC, encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "greet.yaml", "--summary", "s.json", "--junit", "j.xml"])
    assert result.exit_code == 0, result.output
    assert "4 passed, 0 failed" in result.output and "greet[lang=fr,tone=formal]" in result.output
    files = sorted(p.name for p in (tmp_path / "transcripts").glob("*.json"))
    assert files == ["greet[lang=de,tone=formal].json", "greet[lang=en,tone=casual].json",
                     "greet[lang=en,tone=formal].json", "greet[lang=fr,tone=formal].json"]
    data = json.loads((tmp_path / "transcripts" / "greet[lang=fr,tone=formal].json").read_text(encoding="utf-8"))
    assert data["case"] == "lang=fr,tone=formal" and data["turns"][0]["user"] == "formal hello in fr to Ada"
    summary = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert len(summary["conversations"]) == 4
    assert "greet[lang=de,tone=formal]" in (tmp_path / "j.xml").read_text(encoding="utf-8")
    only = CliRunner().invoke(cli, ["run", "greet.yaml", "-k", "lang=de"])
    assert "1 passed, 0 failed" in only.output


def test_cases_are_pytest_items(pytester: pytest.Pytester) -> None:
    (pytester.path / "greet.spec.yaml").write_text(SPEC, encoding="utf-8")
    result = pytester.runpytest("-p", "no:cacheprovider", "--runner-record", "none", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*greet.spec.yaml::greet[[]lang=fr,tone=formal[]] PASSED*"])


def test_each_case_has_its_own_cassette(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.record.cassettes import cassette_path

    monkeypatch.chdir(tmp_path)
    assert cassette_path(Path("cassettes"), "specs/x.yaml", "lang=fr,path=a/b") == \
        Path("cassettes/specs/x[lang=fr,path=a_b].yaml")
    assert cassette_path(Path("cassettes"), "specs/x.yaml") == Path("cassettes/specs/x.yaml")
