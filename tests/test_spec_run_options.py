"""A turn's `run:` options in specs: the schema's checks with their messages, the semantic tool_choice
checks, and the options in the API's form (runner.spec.runopts)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest

from runner.spec import RunOptions, SpecError, SpecInvalid, load_spec
from runner.spec.schema import schema_errors, spec_schema
from runner.spec.yamlpos import load_yaml

FILE = "spec.yaml"

HEAD = """\
assistant:
  model: scripted
  tools:
    - name: get_weather
    - name: get_time
conversation:
  - user: hi
"""


def with_run(run: str, head: str = HEAD) -> str:
    """A spec whose one turn has `run: <run>` (a flow mapping, or a block written at the turn's level)."""
    return head + f"    run: {run}\n"


def schema_errors_of(text: str) -> list[SpecError]:
    return sorted(schema_errors(load_yaml(text, FILE)), key=lambda e: (e.line, e.column))


def load_errors(tmp_path: Path, text: str) -> list[SpecError]:
    path = tmp_path / FILE
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecInvalid) as info:
        load_spec(path)
    return info.value.errors


def loaded(tmp_path: Path, text: str) -> RunOptions:
    path = tmp_path / FILE
    path.write_text(text, encoding="utf-8")
    return load_spec(path).turns[0].run


# --- the schema accepts ---------------------------------------------------------------------------


@pytest.mark.parametrize("run", [
    "{tool_choice: auto}",
    "{tool_choice: none}",
    "{tool_choice: required, temperature: 0.2}",
    "{tool_choice: get_weather}",
    "{tool_choice: {type: function, function: {name: get_weather}}}",
    "{model: gpt-4o-mini, temperature: 0, top_p: 1}",
    "{temperature: 2, top_p: 0}",
    "{max_prompt_tokens: 256, max_completion_tokens: 4096}",
    "{max_prompt_tokens: 1, max_completion_tokens: 3}",  # below the hosted API's 256: the embedded backend takes it
    "{response_format: auto}",
    "{response_format: {type: json_object}}",
    "{response_format: {type: json_schema, json_schema: {name: reply, schema: {type: object}, strict: true}}}",
    "{parallel_tool_calls: false}",
    "{truncation_strategy: {type: auto}}",
    "{truncation_strategy: {type: last_messages, last_messages: 3}}",
])
def test_valid_run_options(run: str) -> None:
    assert schema_errors_of(with_run(run)) == []


def test_built_in_tool_choices_pass_the_schema() -> None:
    for choice in ("file_search", "code_interpreter", "{type: file_search}", "{type: code_interpreter}"):
        assert schema_errors_of(with_run(f"{{tool_choice: {choice}}}")) == [], choice


def test_the_schema_examples_are_valid_run_options() -> None:
    run_options = spec_schema()["$defs"]["run_options"]
    assert len(run_options["examples"]) >= 2
    validator = jsonschema.Draft202012Validator({"$defs": spec_schema()["$defs"], "$ref": "#/$defs/run_options"})
    for example in run_options["examples"]:
        assert list(validator.iter_errors(example)) == [], example


def test_every_run_option_is_described() -> None:
    defs = spec_schema()["$defs"]
    assert defs["turn"]["properties"]["run"] == {"$ref": "#/$defs/run_options"}
    for name, prop in defs["run_options"]["properties"].items():
        target = defs[prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else prop
        assert target.get("description"), name


# --- the schema refuses, saying where and why -----------------------------------------------------


@pytest.mark.parametrize(("run", "path", "message"), [
    ("{temperature: 3}", "conversation[0].run.temperature", "3 is greater than the maximum of 2"),
    ("{temperature: hot}", "conversation[0].run.temperature", 'expected a number, got a string "hot"'),
    ("{top_p: 1.5}", "conversation[0].run.top_p", "1.5 is greater than the maximum of 1"),
    ("{max_completion_tokens: 0}", "conversation[0].run.max_completion_tokens",
     "0 is less than the minimum of 1"),
    ("{max_prompt_tokens: 300.5}", "conversation[0].run.max_prompt_tokens",
     "expected an integer, got a number 300.5"),
    ("{parallel_tool_calls: maybe}", "conversation[0].run.parallel_tool_calls",
     'expected true or false, got a string "maybe"'),
    ("{tool_choice: {type: web_search}}", "conversation[0].run.tool_choice",
     'expected a string or {type: function, ...} or {type: file_search | code_interpreter, ...}, '
     'got a mapping {"type": "web_search"}'),
    ("{tool_choice: {type: function}}", "conversation[0].run.tool_choice", "missing required field 'function'"),
    ('{tool_choice: "call it"}', "conversation[0].run.tool_choice",
     '"call it" does not match the expected form ^[a-zA-Z0-9_-]{1,64}$'),
    ("{tool_choice: 5}", "conversation[0].run.tool_choice",
     "expected a string or {type: function, ...} or {type: file_search | code_interpreter, ...}, got an integer 5"),
    ("{response_format: {type: xml}}", "conversation[0].run.response_format",
     'expected "auto" or {type: text | json_object, ...} or {type: json_schema, ...}, got a mapping {"type": "xml"}'),
    ("{truncation_strategy: {type: last_messages}}", "conversation[0].run.truncation_strategy",
     "missing required field 'last_messages'"),
    ("{truncation_strategy: {type: middle}}", "conversation[0].run.truncation_strategy",
     'expected {type: auto, ...} or {type: last_messages, ...}, got a mapping {"type": "middle"}'),
    ("{truncation_strategy: {type: last_messages, last_messages: 0}}",
     "conversation[0].run.truncation_strategy.last_messages", "0 is less than the minimum of 1"),
    ("{}", "conversation[0].run", "must not be empty"),
    ("{temprature: 1}", "conversation[0].run.temprature", "unknown field 'temprature' (did you mean 'temperature'?)"),
])
def test_invalid_run_options(run: str, path: str, message: str) -> None:
    (err,) = schema_errors_of(with_run(run))
    assert (err.line, err.path, err.message) == (8, path, message)


def test_errors_point_at_the_value_in_a_block_mapping() -> None:
    errors = schema_errors_of(HEAD + "    run:\n      tool_choice: {type: web_search}\n      temperature: 3\n")
    assert [f"{e.file}:{e.line}:{e.column}: {e.path}" for e in errors] == [
        f"{FILE}:9:20: conversation[0].run.tool_choice",
        f"{FILE}:10:20: conversation[0].run.temperature",
    ]


# --- semantic checks: a tool_choice must name a tool the run has ----------------------------------


def test_tool_choice_naming_an_undeclared_function(tmp_path: Path) -> None:
    (err,) = load_errors(tmp_path, with_run("{tool_choice: get_wether}"))
    assert str(err) == (f"{tmp_path / FILE}:8:24: conversation[0].run.tool_choice: 'get_wether' is neither auto, "
                        "none, required, file_search, code_interpreter nor a function in assistant.tools "
                        "(did you mean 'get_weather'?)")


def test_misspelt_keyword_is_suggested_too(tmp_path: Path) -> None:
    (err,) = load_errors(tmp_path, with_run("{tool_choice: requird}"))
    assert err.message.endswith("(did you mean 'required'?)")


def test_object_tool_choice_naming_an_undeclared_function(tmp_path: Path) -> None:
    (err,) = load_errors(tmp_path, with_run("{tool_choice: {type: function, function: {name: translate}}}"))
    assert (err.line, err.column, err.path) == (8, 58, "conversation[0].run.tool_choice.function.name")
    assert err.message == "no function named 'translate' in assistant.tools (tools: get_time, get_weather)"


def test_required_without_any_tool(tmp_path: Path) -> None:
    (err,) = load_errors(tmp_path, "assistant: {model: echo}\nconversation:\n  - user: hi\n"
                                   "    run: {tool_choice: required}\n")
    assert (err.line, err.path) == (4, "conversation[0].run.tool_choice")
    assert err.message == "'required' needs a function in assistant.tools (none declared)"


def test_built_in_tool_choice_needs_that_tool_in_the_assistant(tmp_path: Path) -> None:
    (err,) = load_errors(tmp_path, with_run("{tool_choice: file_search}"))
    assert err.path == "conversation[0].run.tool_choice"
    assert err.message == ("'file_search' needs the file_search tool, which assistant.tools does not have: add "
                           "`- file_search` to assistant.tools")
    declared = HEAD.replace("    - name: get_time\n", "    - name: get_time\n    - file_search\n    - code_interpreter\n")
    assert loaded(tmp_path, with_run("{tool_choice: file_search}", declared)).tool_choice == {"type": "file_search"}
    assert loaded(tmp_path, with_run("{tool_choice: {type: code_interpreter}}", declared)).tool_choice == {
        "type": "code_interpreter"}
    existing = "assistant_id: asst_1\nconversation:\n  - user: hi\n"
    assert loaded(tmp_path, with_run("{tool_choice: file_search}", existing)).tool_choice == {"type": "file_search"}
    # an existing assistant's tools are unknown to the spec: its backend judges the name
    assert loaded(tmp_path, with_run("{tool_choice: anything}", existing)).tool_choice == {
        "type": "function", "function": {"name": "anything"}}


def test_every_problem_is_reported_with_the_others(tmp_path: Path) -> None:
    text = HEAD + "    run: {tool_choice: nope}\n  - user: again\n    run: {tool_choice: {type: code_interpreter}}\n" \
                  "    tool_outputs: {nada: x}\n"
    errors = load_errors(tmp_path, text)
    assert [e.path for e in errors] == ["conversation[0].run.tool_choice", "conversation[1].run.tool_choice",
                                        "conversation[1].tool_outputs.nada"]


# --- the options in the API's form ----------------------------------------------------------------


@pytest.mark.parametrize(("choice", "api"), [
    ("auto", "auto"), ("none", "none"), ("required", "required"),
    ("get_time", {"type": "function", "function": {"name": "get_time"}}),
    ("{type: function, function: {name: get_time}}", {"type": "function", "function": {"name": "get_time"}}),
])
def test_tool_choice_in_the_apis_form(tmp_path: Path, choice: str, api: object) -> None:
    assert loaded(tmp_path, with_run(f"{{tool_choice: {choice}}}")).tool_choice == api


def test_options_become_run_parameters_and_templates_render(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        assistant: {model: echo, temperature: 1}
        vars: {fast: gpt-4o-mini}
        conversation:
          - user: hi
            run:
              model: "{{ fast }}"
              temperature: 0.2
              top_p: 0.5
              max_prompt_tokens: 1000
              max_completion_tokens: 300
              response_format: {type: json_object}
              parallel_tool_calls: false
              truncation_strategy: {type: last_messages, last_messages: 2}
          - user: plain
        """)
    path = tmp_path / FILE
    path.write_text(text, encoding="utf-8")
    first, second = load_spec(path).turns
    assert first.run.to_params() == {
        "model": "gpt-4o-mini", "temperature": 0.2, "top_p": 0.5, "max_prompt_tokens": 1000,
        "max_completion_tokens": 300, "response_format": {"type": "json_object"}, "parallel_tool_calls": False,
        "truncation_strategy": {"type": "last_messages", "last_messages": 2},
    }
    assert first.run.model_where == f"{path}:6:14"
    assert second.run == RunOptions() and second.run.to_params() == {}
