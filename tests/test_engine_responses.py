"""The Responses pipeline (`runner run --pipeline responses`): the same specs through conversations and
responses on the built-in backend, function calls answered with function_call_output items, the same checks
and transcript format, and what the pipeline cannot express refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES

from runner.cli import cli

OFFLINE = ["hello.yaml", "multi_turn.yaml", "weather_tool.yaml", "greetings_matrix.yaml"]


@pytest.fixture
def runner_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_the_offline_examples_pass_through_the_responses_pipeline(runner_here: CliRunner, tmp_path: Path) -> None:
    result = runner_here.invoke(cli, ["run", *(str(EXAMPLES / name) for name in OFFLINE), "--pipeline", "responses",
                                      "-o", "out"])
    assert result.exit_code == 0, result.output
    assert "7 passed, 0 failed" in result.output  # greetings_matrix.yaml is four cases
    weather = json.loads(next((tmp_path / "out").rglob("weather_tool.json")).read_text(encoding="utf-8"))
    assert weather["pipeline"] == "responses" and weather["thread_id"].startswith("conv_")
    first = weather["turns"][0]
    assert first["run_id"].startswith("resp_") and first["status"] == "completed"
    assert first["tool_calls"][0]["name"] == "get_weather" and first["tool_calls"][0]["arguments"]["city"] == "Paris"
    assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"] > 0


def test_both_pipelines_give_the_same_replies_and_calls(runner_here: CliRunner, tmp_path: Path) -> None:
    specs = [str(EXAMPLES / "weather_tool.yaml"), str(EXAMPLES / "multi_turn.yaml")]
    for pipeline in ("assistants", "responses"):
        result = runner_here.invoke(cli, ["run", *specs, "--pipeline", pipeline, "-o", pipeline])
        assert result.exit_code == 0, result.output
    for name in ("weather_tool.json", "multi_turn.json"):
        old, new = (json.loads(next((tmp_path / p).rglob(name)).read_text(encoding="utf-8"))
                    for p in ("assistants", "responses"))
        assert [t["reply"] for t in old["turns"]] == [t["reply"] for t in new["turns"]]
        assert [[(c["name"], c["arguments"], c["output"]) for c in t["tool_calls"]] for t in old["turns"]] == \
            [[(c["name"], c["arguments"], c["output"]) for c in t["tool_calls"]] for t in new["turns"]]
        assert (old["pipeline"], new["pipeline"]) == ("assistants", "responses")


def test_a_response_cut_by_its_budget_is_incomplete_and_checked_as_such(runner_here: CliRunner,
                                                                         tmp_path: Path) -> None:
    (tmp_path / "short.yaml").write_text(
        "assistant: {model: echo}\n"
        "conversation:\n"
        "  - user: one two three four five six\n"
        "    run: {max_completion_tokens: 2}\n"
        "    expect: [{status: incomplete}, {equals: one two}]\n", encoding="utf-8")
    result = runner_here.invoke(cli, ["run", "short.yaml", "--pipeline", "responses"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "transcripts" / "short.json").read_text(encoding="utf-8"))
    assert data["turns"][0]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_what_the_responses_pipeline_cannot_express_is_refused_naming_spec_and_field(runner_here: CliRunner,
                                                                                     tmp_path: Path) -> None:
    (tmp_path / "existing.yaml").write_text("assistant_id: asst_abc\nconversation: [{user: hi}]\n", encoding="utf-8")
    result = runner_here.invoke(cli, ["run", "existing.yaml", "--pipeline", "responses"])
    assert result.exit_code == 2
    assert "existing.yaml: assistant_id: an existing assistant has no Responses equivalent" in result.output
    assert "nothing was run" in result.output


def test_a_failing_model_is_a_failed_turn_with_its_message(runner_here: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(
        "assistant: {model: scripted}\n"
        "backend:\n  rules: [{user: '.*', error: 'the model is down'}]\n"
        "conversation:\n  - user: hi\n", encoding="utf-8")
    result = runner_here.invoke(cli, ["run", "broken.yaml", "--pipeline", "responses"])
    assert result.exit_code == 1
    data = json.loads((tmp_path / "transcripts" / "broken.json").read_text(encoding="utf-8"))
    turn = data["turns"][0]
    assert turn["status"] == "failed" and "the model is down" in turn["last_error"]["message"]


def test_runner_diff_pairs_an_assistants_folder_with_a_responses_one(runner_here: CliRunner, tmp_path: Path) -> None:
    specs = [str(EXAMPLES / "weather_tool.yaml"), str(EXAMPLES / "multi_turn.yaml")]
    for pipeline, out in (("assistants", "before"), ("responses", "after")):
        assert runner_here.invoke(cli, ["run", *specs, "--pipeline", pipeline, "-o", out]).exit_code == 0
    result = runner_here.invoke(cli, ["diff", "before", "after"])
    assert result.exit_code == 0, result.output
    assert "0 changed, 2 unchanged, 0 added, 0 removed" in result.output


def test_both_pipelines_run_each_conversation_twice_and_print_the_parity_table(runner_here: CliRunner,
                                                                               tmp_path: Path) -> None:
    specs = [str(EXAMPLES / "weather_tool.yaml"), str(EXAMPLES / "greetings_matrix.yaml")]
    result = runner_here.invoke(cli, ["run", *specs, "--pipeline", "both", "-o", "out"])
    assert result.exit_code == 0, result.output
    assert "10 passed, 0 failed" in result.output
    assert "weather-tool[pipeline=responses]" in result.output
    assert "greetings[lang=fr,tone=formal,pipeline=responses]" in result.output
    assert "parity: 5 of 5 conversations the same on both pipelines" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("weather-tool "))
    assert row.split() == ["weather-tool", "passed", "passed", "same", "same"]
    names = {p.name for p in (tmp_path / "out").rglob("weather_tool*.json")}
    assert names == {"weather_tool.json", "weather_tool[pipeline=responses].json"}


def test_the_parity_table_says_where_the_pipelines_differ() -> None:
    from runner.report.parity import parities, parity_lines
    from runner.report.transcript import ToolCallRecord, Transcript, TurnRecord

    def transcript(pipeline: str, reply: str, city: str) -> Transcript:
        turn = TurnRecord(index=0, user="weather?", reply=reply, status="completed",
                          tool_calls=[ToolCallRecord("c1", "get_weather", {"city": city}, "21")])
        case = "lang=fr,pipeline=responses" if pipeline == "responses" else "lang=fr"
        return Transcript(spec_file="w.yaml", name=f"w[{case}]", backend={}, model="m", assistant=None,
                          turns=[turn], case=case, pipeline=pipeline)

    (row,) = parities([transcript("assistants", "21 degrees", "Paris"), transcript("responses", "21°", "Paris")])
    assert (row.label, row.same_replies, row.same_calls, row.same) == ("w[lang=fr]", False, True, False)
    (calls,) = parities([transcript("assistants", "x", "Paris"), transcript("responses", "x", "Oslo")])
    assert not calls.same_calls and calls.same_replies
    (alone,) = parities([transcript("assistants", "x", "Paris")])
    assert alone.responses == "not run" and not alone.same
    assert parity_lines([transcript("assistants", "a", "P"), transcript("responses", "b", "P")])[-1] == \
        "parity: 0 of 1 conversation the same on both pipelines"


def test_stable_transcripts_of_the_responses_pipeline_diff_clean(runner_here: CliRunner, tmp_path: Path) -> None:
    spec = str(EXAMPLES / "weather_tool.yaml")
    for folder in ("one", "two"):
        result = runner_here.invoke(cli, ["run", spec, "--pipeline", "responses", "--stable", "-o", folder])
        assert result.exit_code == 0, result.output
    one, two = (next((tmp_path / f).rglob("weather_tool.json")).read_text(encoding="utf-8") for f in ("one", "two"))
    assert one == two
    data = json.loads(one)
    assert data["thread_id"] == "conv_1" and [t["run_id"] for t in data["turns"]][:2] == ["resp_1", "resp_2"]
