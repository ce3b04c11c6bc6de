"""`backend: {pipeline: ...}` in a spec: loaded onto the spec (not its backend), validated with its line, the
spec's choice when `runner run` has no `--pipeline`, the flag's over every spec when given, and `both` running
the spec on both pipelines with the parity table, as `--pipeline both` does."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.spec import BackendConfig, SpecInvalid, load_spec
from runner.spec.pipelines import any_on_both, piped

HELLO = "assistant: {model: echo}\nconversation:\n  - user: hello\n    expect: [{contains: hello}]\n"


def write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def runner_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.mark.parametrize("value", ["assistants", "responses", "both"])
def test_the_pipeline_loads_onto_the_spec_and_does_not_split_backends(tmp_path: Path, value: str) -> None:
    spec = load_spec(write(tmp_path, f"backend: {{pipeline: {value}}}\n" + HELLO))
    assert spec.pipeline == value
    assert spec.backend == BackendConfig() and spec.backend.key() == BackendConfig().key()


def test_without_a_pipeline_a_spec_is_on_the_assistants_one(tmp_path: Path) -> None:
    assert load_spec(write(tmp_path, HELLO)).pipeline == "assistants"


def test_an_unknown_pipeline_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, HELLO + "backend:\n  stream: true\n  pipeline: chat\n")
    with pytest.raises(SpecInvalid) as info:
        load_spec(path)
    (err,) = info.value.errors
    assert (err.file, err.line, err.path) == (str(path), 7, "backend.pipeline")
    assert str(err).startswith(f"{path}:7:13: backend.pipeline: ")
    assert err.message == 'must be one of: assistants, responses, both (got "chat")'


def test_piped_takes_the_flag_over_the_spec_and_expands_both(tmp_path: Path) -> None:
    both = load_spec(write(tmp_path, "backend: {pipeline: both}\n" + HELLO, "both.yaml"))
    plain = load_spec(write(tmp_path, HELLO, "plain.yaml"))
    assert [(s.pipeline, s.case) for s in piped([both, plain])] == [
        ("assistants", ""), ("responses", "pipeline=responses"), ("assistants", "")]
    assert [s.pipeline for s in piped([both, plain], "responses")] == ["responses", "responses"]
    assert any_on_both([both, plain]) and not any_on_both([both, plain], "assistants")
    assert any_on_both([plain], "both")


def test_the_spec_chooses_the_pipeline_when_the_flag_is_not_given(runner_here: CliRunner, tmp_path: Path) -> None:
    write(tmp_path, "backend: {pipeline: responses}\n" + HELLO, "hello.yaml")
    result = runner_here.invoke(cli, ["run", "hello.yaml", "-o", "spec"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "spec" / "hello.json").read_text(encoding="utf-8"))["pipeline"] == "responses"
    result = runner_here.invoke(cli, ["run", "hello.yaml", "--pipeline", "assistants", "-o", "flag"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "flag" / "hello.json").read_text(encoding="utf-8"))["pipeline"] == "assistants"
    assert "parity:" not in result.output


def test_a_spec_on_both_runs_twice_and_prints_the_parity_table(runner_here: CliRunner, tmp_path: Path) -> None:
    write(tmp_path, "backend: {pipeline: both}\n" + HELLO, "hello.yaml")
    write(tmp_path, HELLO, "plain.yaml")  # on the assistants pipeline only: its row says the other did not run
    result = runner_here.invoke(cli, ["run", "hello.yaml", "plain.yaml", "-o", "out"])
    assert result.exit_code == 0, result.output
    assert "3 passed, 0 failed" in result.output
    assert "hello[pipeline=responses]" in result.output
    names = {p.name for p in (tmp_path / "out").rglob("*.json")}
    assert {"hello.json", "hello[pipeline=responses].json", "plain.json"} <= names
    pipelines = {json.loads((tmp_path / "out" / name).read_text(encoding="utf-8"))["pipeline"]
                 for name in ("hello.json", "hello[pipeline=responses].json")}
    assert pipelines == {"assistants", "responses"}
    row = next(line for line in result.output.splitlines() if line.startswith("hello "))
    assert row.split() == ["hello", "passed", "passed", "same", "same"]
    assert "parity: 1 of 2 conversations the same on both pipelines" in result.output


def test_run_help_says_the_flag_overrides_the_spec() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert "backend: {pipeline: ...}" in " ".join(result.output.split())
