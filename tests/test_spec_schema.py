"""JSON Schema validation of specs with human messages (runner.spec.schema)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
from conftest import GREETING

from runner.spec.errors import SpecError, SpecInvalid
from runner.spec.load import load_spec
from runner.spec.schema import SCHEMA_FILE, schema_errors, spec_schema
from runner.spec.yamlpos import load_yaml

FILE = "spec.yaml"



def errors_of(text: str) -> list[SpecError]:
    """Schema errors of a YAML text, in file order."""
    doc = load_yaml(textwrap.dedent(text), FILE)
    return sorted(schema_errors(doc), key=lambda e: (e.line, e.column))


def lines_of(text: str) -> list[str]:
    return [str(e) for e in errors_of(text)]


def spec_with_turn(turn: str) -> str:
    """A minimal spec whose single turn is `turn` (YAML written at the turn's indentation)."""
    return "assistant:\n  model: echo\nconversation:\n" + textwrap.indent(textwrap.dedent(turn), "  ")


def test_schema_file_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(spec_schema())
    assert spec_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_packaged_schema_is_the_published_one():
    published = Path(__file__).resolve().parents[1] / "schemas" / "spec.schema.json"
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == json.loads(published.read_text(encoding="utf-8"))


def test_pinned_example_is_valid():
    assert errors_of(GREETING) == []


def test_minimal_existing_assistant_is_valid():
    assert errors_of("""\
        assistant_id: asst_abc123
        conversation:
          - user: hi
        """) == []


def test_full_featured_spec_is_valid():
    assert errors_of("""\
        name: full
        description: every field
        tags: [smoke, tools]
        assistant:
          model: scripted
          name: Bot
          description: A bot
          instructions: Be brief.
          temperature: 0.5
          top_p: 1
          response_format: auto
          metadata: {team: qa}
          tools:
            - name: get_weather
              description: Weather by city
              parameters: {type: object, properties: {city: {type: string}}}
              strict: true
        backend:
          provider: scripted
          stream: false
          rules:
            - user: weather in (\\w+)
              call: {name: get_weather, arguments: {city: "\\\\1"}}
            - tool_output: sunny
              reply: It is sunny.
            - user: both
              calls: [{name: a}, {name: b}]
            - user: boom
              error: broken
        vars: {city: Paris}
        conversation:
          - user: 42
            instructions: Answer in French.
            additional_instructions: Be polite.
            tool_outputs:
              get_weather: {template: "{{ args.city }} is sunny"}
            expect:
              - contains: 42
              - not_contains: error
              - icontains: SUNNY
              - equals: It is sunny.
              - starts_with: It
              - regex: sun+y
              - json: true
              - tool_called: get_weather
              - status: completed
              - max_latency_ms: 2500
        """) == []


# --- unknown fields and checks --------------------------------------------------------------------


def test_unknown_field_with_did_you_mean():
    assert lines_of("""\
        assistant:
          model: echo
          tempurature: 0.5
        conversation:
          - user: hi
        """) == [f"{FILE}:3:3: assistant.tempurature: unknown field 'tempurature' (did you mean 'temperature'?)"]


def test_unknown_field_in_a_turn():
    assert lines_of(spec_with_turn("""\
        - user: hi
          expext: []
        """)) == [f"{FILE}:5:5: conversation[0].expext: unknown field 'expext' (did you mean 'expect'?)"]


def test_unknown_field_without_a_close_match_lists_known_fields():
    (err,) = errors_of("""\
        assistant:
          model: echo
        backend:
          zzzzzz: 1
        conversation:
          - user: hi
        """)
    assert (err.line, err.column, err.path) == (4, 3, "backend.zzzzzz")
    assert err.message == (
        "unknown field 'zzzzzz'; known fields: base_url, api_key_env, provider, rules, stream, pipeline, code_timeout, "
        "code_memory"
    )


def test_unknown_check_with_did_you_mean():
    text = spec_with_turn("""\
        - user: hi
        - user: again
          expect:
            - contains: ok
            - containz: hi
        """)
    assert lines_of(text) == [
        f"{FILE}:8:9: conversation[1].expect[1].containz: unknown check 'containz' (did you mean 'contains'?)"
    ]


def test_unknown_check_without_close_match_lists_known_checks():
    (err,) = errors_of(spec_with_turn("""\
        - user: hi
          expect:
            - frobnicate: x
        """))
    assert err.path == "conversation[0].expect[0].frobnicate"
    assert err.message.startswith("unknown check 'frobnicate'; known checks: contains, not_contains, icontains")
    assert "tool_called" in err.message and "max_latency_ms" in err.message


def test_check_with_two_keys():
    (err,) = errors_of(spec_with_turn("""\
        - user: hi
          expect:
            - contains: a
              regex: b
        """))
    assert (err.line, err.column, err.path) == (6, 9, "conversation[0].expect[0]")
    assert err.message == (
        "a check has exactly one key (check type -> argument), found contains, regex: "
        "put each check in its own list item"
    )


def test_empty_check():
    (err,) = errors_of(spec_with_turn("""\
        - user: hi
          expect:
            - {}
        """))
    assert (err.path, err.message) == ("conversation[0].expect[0]", "must not be empty")


def test_check_that_is_not_a_mapping():
    (err,) = errors_of(spec_with_turn("""\
        - user: hi
          expect:
            - contains
        """))
    assert err.path == "conversation[0].expect[0]"
    assert err.message == 'expected a mapping, got a string "contains"'


# --- wrong types and values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "path", "message"),
    [
        ("  temperature: hot", "assistant.temperature", 'expected a number, got a string "hot"'),
        ("  top_p: true", "assistant.top_p", "expected a number, got a boolean true"),
        ("  name: 5", "assistant.name", "expected a string, got an integer 5"),
        ("  tools: {name: x}", "assistant.tools", 'expected a list, got a mapping {"name": "x"}'),
        ("  instructions: [a, b]", "assistant.instructions", 'expected a string, got a list ["a", "b"]'),
        ("  temperature: 1.5e", "assistant.temperature", 'expected a number, got a string "1.5e"'),
    ],
)
def test_wrong_type_says_expected_and_got(line, path, message):
    (err,) = errors_of(f"assistant:\n  model: echo\n{line}\nconversation:\n  - user: hi\n")
    assert (err.path, err.message) == (path, message)


def test_null_where_a_string_is_expected():
    (err,) = errors_of("assistant:\n  model: null\nconversation:\n  - user: hi\n")
    assert (err.line, err.column, err.path) == (2, 10, "assistant.model")
    assert err.message.startswith("expected a string, got null")


def test_wrong_type_position_is_the_value():
    assert lines_of(spec_with_turn("""\
        - user: [a]
          expect:
            - contains: {a: 1}
        """)) == [
        f'{FILE}:4:11: conversation[0].user: expected a string or a number, got a list ["a"]',
        f'{FILE}:6:19: conversation[0].expect[0].contains: expected a string or a number, got a mapping {{"a": 1}}',
    ]


def test_long_values_are_shortened_in_messages():
    (err,) = errors_of(spec_with_turn(f"""\
        - user: hi
          expect:
            - regex: [{", ".join(["abcdefghij"] * 10)}]
        """))
    assert err.message.startswith('expected a string, got a list ["abcdefghij", ')
    assert err.message.endswith("...")
    assert len(err.message) < 100


def test_turn_that_is_not_a_mapping():
    (err,) = errors_of("assistant: {model: echo}\nconversation:\n  - hello\n")
    assert str(err) == f'{FILE}:3:5: conversation[0]: expected a mapping, got a string "hello"'


def test_enum_status():
    statuses = spec_schema()["$defs"]["check"]["properties"]["status"]["enum"]
    assert statuses[:3] == ["completed", "failed", "cancelled"]
    assert lines_of(spec_with_turn("""\
        - user: hi
          expect:
            - status: done
        """)) == [
        f"{FILE}:6:17: conversation[0].expect[0].status: must be one of: {', '.join(statuses)} (got \"done\")"
    ]


def test_enum_provider():
    (err,) = errors_of("""\
        assistant: {model: echo}
        backend: {provider: openai}
        conversation: [{user: hi}]
        """)
    assert (err.path, err.message) == ("backend.provider", 'must be one of: echo, scripted (got "openai")')
    (err,) = errors_of("assistant: {model: echo}\nbackend: {provider: scripter}\nconversation: [{user: hi}]\n")
    assert err.message == "must be one of: echo, scripted (got \"scripter\"; did you mean 'scripted'?)"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("  temperature: 2.5", "assistant.temperature"),
        ("  top_p: -0.1", "assistant.top_p"),
    ],
)
def test_number_ranges(text, path):
    (err,) = errors_of(f"assistant:\n  model: echo\n{text}\nconversation:\n  - user: hi\n")
    assert err.path == path
    assert "maximum" in err.message or "minimum" in err.message


def test_max_latency_must_be_positive():
    (err,) = errors_of(spec_with_turn("""\
        - user: hi
          expect:
            - max_latency_ms: 0
        """))
    assert err.path == "conversation[0].expect[0].max_latency_ms"
    assert "0 is less than or equal to the minimum of 0" in err.message


def test_missing_required_user_in_a_turn():
    assert lines_of(spec_with_turn("""\
        - user: hi
        - expect:
            - contains: x
        """)) == [f"{FILE}:5:5: conversation[1]: missing required field 'user'"]


def test_missing_required_model():
    (err,) = errors_of("assistant:\n  name: Bot\nconversation:\n  - user: hi\n")
    assert str(err) == f"{FILE}:2:3: assistant: missing required field 'model'"


def test_missing_conversation():
    (err,) = errors_of("assistant:\n  model: echo\n")
    assert str(err) == f"{FILE}:1:1: missing required field 'conversation'"


def test_empty_conversation():
    assert lines_of("""\
        assistant:
          model: echo
        conversation: []
        """) == [f"{FILE}:3:15: conversation: must not be empty"]


def test_tool_name_pattern():
    (err,) = errors_of("""\
        assistant:
          model: echo
          tools:
            - name: get weather
        conversation: [{user: hi}]
        """)
    assert (err.line, err.column, err.path) == (4, 13, "assistant.tools[0].name")
    assert err.message == '"get weather" does not match the expected form ^[a-zA-Z0-9_-]{1,64}$'


def test_metadata_limits():
    many = ", ".join(f"k{i}: v" for i in range(17))
    (err,) = errors_of(f"assistant:\n  model: echo\n  metadata: {{{many}}}\nconversation: [{{user: hi}}]\n")
    assert err.path == "assistant.metadata"
    (err,) = errors_of("assistant:\n  model: echo\n  metadata: {k: 1}\nconversation: [{user: hi}]\n")
    assert (err.path, err.message) == ("assistant.metadata.k", "expected a string, got an integer 1")


# --- assistant / assistant_id ---------------------------------------------------------------------

EXACTLY_ONE = "give exactly one of `assistant` (a new assistant) or `assistant_id` (an existing one)"


def test_neither_assistant_nor_assistant_id():
    assert lines_of("name: x\nconversation:\n  - user: hi\n") == [f"{FILE}:1:1: {EXACTLY_ONE}"]


def test_both_assistant_and_assistant_id():
    assert lines_of("""\
        assistant:
          model: echo
        assistant_id: asst_1
        conversation:
          - user: hi
        """) == [f"{FILE}:1:1: {EXACTLY_ONE}"]


# --- backend --------------------------------------------------------------------------------------


def test_api_key_env_without_base_url():
    assert lines_of("""\
        assistant:
          model: echo
        backend:
          api_key_env: MY_KEY
        conversation:
          - user: hi
        """) == [f"{FILE}:4:3: backend: 'api_key_env' needs 'base_url' as well"]


def test_api_key_env_with_base_url_is_valid():
    assert errors_of("""\
        assistant: {model: echo}
        backend:
          base_url: https://api.example.com/v1
          api_key_env: MY_KEY
        conversation: [{user: hi}]
        """) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("base_url", "ftp://x"), ("api_key_env", "1BAD")],
)
def test_backend_patterns(field, value):
    backend = f"  {field}: {value}\n" if field == "base_url" else f"  base_url: http://x\n  {field}: {value}\n"
    text = f"assistant: {{model: echo}}\nbackend:\n{backend}conversation: [{{user: hi}}]\n"
    (err,) = errors_of(text)
    assert err.path == f"backend.{field}"
    assert "does not match the expected form" in err.message


# --- response_format ------------------------------------------------------------------------------


def with_format(fmt: str) -> str:
    return f"assistant:\n  model: echo\n  response_format:{fmt}\nconversation:\n  - user: hi\n"


@pytest.mark.parametrize(
    "fmt",
    [
        " auto",
        " {type: text}",
        " {type: json_object}",
        " {type: json_schema, json_schema: {name: reply}}",
        "\n    type: json_schema\n    json_schema:\n      name: weather_reply-v2\n      description: d\n"
        "      schema: {type: object, required: [city]}\n      strict: true",
    ],
)
def test_response_format_valid(fmt):
    assert errors_of(with_format(fmt)) == []


SHAPES = 'expected "auto" or {type: text | json_object, ...} or {type: json_schema, ...}'


@pytest.mark.parametrize(
    ("fmt", "path", "message"),
    [
        (" {type: xml}", "assistant.response_format", SHAPES + ', got a mapping {"type": "xml"}'),
        (" json", "assistant.response_format", SHAPES + ', got a string "json"'),
        (" 5", "assistant.response_format", SHAPES + ", got an integer 5"),
        (" {type: json_schema}", "assistant.response_format", "missing required field 'json_schema'"),
        (" {type: json_schema, json_schema: {}}", "assistant.response_format.json_schema",
         "missing required field 'name'"),
        (' {type: json_schema, json_schema: {name: "bad name"}}', "assistant.response_format.json_schema.name",
         '"bad name" does not match the expected form ^[a-zA-Z0-9_-]{1,64}$'),
        (" {type: text, strict: true}", "assistant.response_format.strict",
         "unknown field 'strict'; known fields: type"),
        (" {type: json_schema, json_schema: {name: r, schema: [1]}}", "assistant.response_format.json_schema.schema",
         "expected a mapping, got a list [1]"),
    ],
)
def test_response_format_invalid(fmt, path, message):
    (err,) = errors_of(with_format(fmt))
    assert (err.line, err.path, err.message) == (3, path, message)


# --- tool_called ----------------------------------------------------------------------------------


def with_check(check: str) -> str:
    return spec_with_turn(f"- user: hi\n  expect:\n    - {check}\n")


@pytest.mark.parametrize(
    "check",
    [
        "tool_called: get_weather",
        "tool_called: {name: get_weather}",
        "tool_called: {name: get_weather, arguments: {city: Paris, days: 3}}",
    ],
)
def test_tool_called_forms_valid(check):
    assert errors_of(with_check(check)) == []


@pytest.mark.parametrize(
    ("check", "path", "message"),
    [
        ("tool_called: {arguments: {a: 1}}", "conversation[0].expect[0].tool_called", "missing required field 'name'"),
        ("tool_called: 5", "conversation[0].expect[0].tool_called",
         "expected a string or a mapping, got an integer 5"),
        ("tool_called: {name: f, args: {}}", "conversation[0].expect[0].tool_called.args",
         "unknown field 'args' (did you mean 'arguments'?)"),
        ("tool_called: {name: f, argz: {}, arguments: {}}", "conversation[0].expect[0].tool_called.argz",
         "unknown field 'argz'; known fields: name, arguments"),
        ("tool_called: {name: f, arguments: [1]}", "conversation[0].expect[0].tool_called.arguments",
         "expected a mapping, got a list [1]"),
    ],
)
def test_tool_called_invalid(check, path, message):
    (err,) = errors_of(with_check(check))
    assert (err.line, err.path, err.message) == (6, path, message)


def test_tool_called_empty_name():
    (err,) = errors_of(with_check('tool_called: ""'))
    assert err.path == "conversation[0].expect[0].tool_called"
    assert "non-empty" in err.message or "too short" in err.message


# --- json check -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check",
    ["json: true", "json: {}", "json: {schema: {type: object, required: [a]}}"],
)
def test_json_check_forms_valid(check):
    assert errors_of(with_check(check)) == []


@pytest.mark.parametrize(
    ("check", "path", "message"),
    [
        ("json: false", "conversation[0].expect[0].json", "expected true or a mapping, got a boolean false"),
        ("json: yes please", "conversation[0].expect[0].json",
         'expected true or a mapping, got a string "yes please"'),
        ("json: {schemaa: {}}", "conversation[0].expect[0].json.schemaa",
         "unknown field 'schemaa' (did you mean 'schema'?)"),
        ("json: {schema: true}", "conversation[0].expect[0].json.schema", "expected a mapping, got a boolean true"),
    ],
)
def test_json_check_invalid(check, path, message):
    (err,) = errors_of(with_check(check))
    assert (err.line, err.path, err.message) == (6, path, message)


# --- tool_outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    ["sunny", "42", "true", "[1, 2]", "{output: {temp: 20}}", "{output: null}", '{template: "{{ args.city }}"}'],
)
def test_tool_output_forms_valid(handler):
    assert errors_of(spec_with_turn(f"- user: hi\n  tool_outputs:\n    f: {handler}\n")) == []


@pytest.mark.parametrize(
    ("handler", "path", "message"),
    [
        ("{output: a, template: b}", "conversation[0].tool_outputs.f", None),
        ("{templat: x}", "conversation[0].tool_outputs.f.templat",
         "unknown field 'templat' (did you mean 'template'?)"),
        ("{template: 5}", "conversation[0].tool_outputs.f.template", "expected a string, got an integer 5"),
        ("null", "conversation[0].tool_outputs.f", None),
    ],
)
def test_tool_output_invalid(handler, path, message):
    (err,) = errors_of(spec_with_turn(f"- user: hi\n  tool_outputs:\n    f: {handler}\n"))
    assert (err.line, err.path) == (6, path)
    if message:
        assert err.message == message


# --- inline rules ---------------------------------------------------------------------------------

TRIGGER = "a rule needs exactly one trigger: `user` or `tool_output`"
ANSWER = "a rule needs exactly one answer: `reply`, `call`, `calls` or `error`"


def with_rules(rules: str) -> str:
    return "assistant:\n  model: scripted\nbackend:\n  rules:\n" + textwrap.indent(textwrap.dedent(rules), "    ") + (
        "conversation:\n  - user: hi\n"
    )


def test_rule_missing_trigger():
    assert lines_of(with_rules("""\
        - user: hi
          reply: hello
        - reply: orphan
        """)) == [f"{FILE}:7:7: backend.rules[1]: {TRIGGER}"]


def test_rule_missing_answer():
    assert lines_of(with_rules("""\
        - user: hi
        """)) == [f"{FILE}:5:7: backend.rules[0]: {ANSWER}"]


def test_rule_with_two_triggers_or_two_answers():
    assert lines_of(with_rules("""\
        - user: a
          tool_output: b
          reply: c
        - user: d
          reply: e
          error: f
        """)) == [
        f"{FILE}:5:7: backend.rules[0]: {TRIGGER}",
        f"{FILE}:8:7: backend.rules[1]: {ANSWER}",
    ]


def test_rule_unknown_field_and_bad_call():
    assert lines_of(with_rules("""\
        - user: a
          replly: b
        - user: c
          call: {arguments: {}}
        """)) == [
        f"{FILE}:5:7: backend.rules[0]: {ANSWER}",
        f"{FILE}:6:7: backend.rules[0].replly: unknown field 'replly' (did you mean 'reply'?)",
        f"{FILE}:8:13: backend.rules[1].call: missing required field 'name'",
    ]


def test_rules_of_the_wrong_type():
    assert lines_of("assistant: {model: echo}\nbackend:\n  rules: 5\nconversation: [{user: hi}]\n") == [
        f"{FILE}:3:10: backend.rules: expected a string or a list, got an integer 5"
    ]


def test_rules_as_a_path_is_valid_for_the_schema():
    text = "assistant: {model: scripted}\nbackend:\n  rules: r.rules.yaml\nconversation: [{user: hi}]\n"
    assert errors_of(text) == []


# --- all errors are reported ----------------------------------------------------------------------

MANY_ERRORS = """\
conversation:
  - user: hi
    expect:
      - containz: hi
      - status: done
  - expect: []
assistant:
  model: echo
  tempurature: 0.5
  top_p: high
tags: [a, a]
extra: 1
"""


def test_every_schema_error_is_reported(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(MANY_ERRORS, encoding="utf-8")
    with pytest.raises(SpecInvalid) as info:
        load_spec(path)
    errors = info.value.errors
    assert [(e.line, e.column, e.path) for e in errors] == [
        (4, 9, "conversation[0].expect[0].containz"),
        (5, 17, "conversation[0].expect[1].status"),
        (6, 5, "conversation[1]"),
        (9, 3, "assistant.tempurature"),
        (10, 10, "assistant.top_p"),
        (11, 7, "tags"),
        (12, 1, "extra"),
    ]
    assert len(errors) == 7
    assert errors == sorted(errors, key=lambda e: (e.line, e.column))
    text = str(info.value).splitlines()
    assert len(text) == 7
    assert text[0] == (
        f"{path}:4:9: conversation[0].expect[0].containz: unknown check 'containz' (did you mean 'contains'?)"
    )
    assert text[2] == f"{path}:6:5: conversation[1]: missing required field 'user'"
    assert text[4] == f'{path}:10:10: assistant.top_p: expected a number, got a string "high"'
    assert text[6].startswith(f"{path}:12:1: extra: unknown field 'extra'; known fields: name, description, tags")


def test_schema_errors_returns_every_error_unsorted_as_a_list():
    doc = load_yaml(MANY_ERRORS, FILE)
    errors = schema_errors(doc)
    assert isinstance(errors, list)
    assert len(errors) == 7
    assert {e.path for e in errors} >= {"assistant.tempurature", "conversation[1]", "extra"}
