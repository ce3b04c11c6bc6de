"""Loading spec files into typed Spec objects (runner.spec.load): templates, semantic checks, rules, find_specs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import GREETING

from runner.spec import (
    AssistantConfig,
    BackendConfig,
    Check,
    FunctionTool,
    Spec,
    SpecError,
    SpecInvalid,
    ToolOutput,
    find_specs,
    load_spec,
)

TOOLS_HEAD = """\
assistant:
  model: scripted
  tools:
    - name: get_weather
      parameters:
        type: object
        properties:
          city: {type: string}
    - name: get_time
vars:
  unit: celsius
conversation:
"""


def tools_spec(turns: str) -> str:
    """A spec declaring get_weather and get_time, with `turns` (dedented) as its conversation."""
    return TOOLS_HEAD + textwrap.indent(textwrap.dedent(turns), "  ")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_errors(path: Path, overrides: dict[str, str] | None = None) -> list[SpecError]:
    with pytest.raises(SpecInvalid) as info:
        load_spec(path, overrides)
    return info.value.errors


def only_error(path: Path, overrides: dict[str, str] | None = None) -> SpecError:
    errors = load_errors(path, overrides)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# --- a valid spec ---------------------------------------------------------------------------------


def test_pinned_example_loads_into_a_typed_spec(tmp_path):
    path = write(tmp_path / "greeting.yaml", GREETING)
    spec = load_spec(path)
    assert isinstance(spec, Spec)
    assert spec.file == str(path)
    assert spec.name == "greeting"
    assert spec.assistant == AssistantConfig(
        model="echo", name="Greeter", instructions="You are a friendly assistant."
    )
    assert spec.assistant_id is None
    assert spec.backend == BackendConfig()
    assert spec.backend.embedded
    assert spec.vars == {"who": "world"}
    assert spec.model_where == f"{path}:3:10"
    assert [t.index for t in spec.turns] == [0, 1]
    first, second = spec.turns
    assert first.user == "你好呀, world"
    assert first.expect == (
        Check("contains", "你好呀", f"{path}:11:19"),
        Check("regex", "^你好", f"{path}:12:16"),
        Check("not_contains", "error", f"{path}:13:23"),
    )
    assert second.user == "Say it again"
    assert second.expect == (Check("icontains", "say it", f"{path}:16:20"),)
    assert first.expected_status == second.expected_status == "completed"
    assert first.tool_outputs == {} and first.instructions is None and first.additional_instructions is None


def test_name_defaults_to_the_file_stem(tmp_path):
    path = write(tmp_path / "say_hello.yaml", GREETING.replace("name: greeting\n", ""))
    assert load_spec(path).name == "say_hello"


def test_optional_fields(tmp_path):
    path = write(tmp_path / "full.yml", """\
        description: checks things
        tags: [smoke, i18n]
        assistant_id: asst_abc123
        backend:
          base_url: http://127.0.0.1:8000/v1
          api_key_env: MY_KEY
          stream: false
        conversation:
          - user: hi
            instructions: "Only {{ lang }}."
            additional_instructions: Be brief.
        vars: {lang: French}
        """)
    spec = load_spec(path)
    assert spec.name == "full"
    assert spec.description == "checks things"
    assert spec.tags == ("smoke", "i18n")
    assert spec.assistant is None and spec.assistant_id == "asst_abc123"
    assert spec.model_where == f"{path}:3:15"
    assert spec.backend == BackendConfig(
        base_url="http://127.0.0.1:8000/v1", api_key_env="MY_KEY", provider=None, rules=None, stream=False
    )
    assert not spec.backend.embedded
    assert spec.turns[0].instructions == "Only French."
    assert spec.turns[0].additional_instructions == "Be brief."


def test_overrides_replace_and_add_vars(tmp_path):
    path = write(tmp_path / "greeting.yaml", GREETING.replace(
        "  - user: Say it again", "  - user: \"{{ who }} again, {{ extra }}\""))
    spec = load_spec(path, {"who": "Bob", "extra": "please"})
    assert spec.turns[0].user == "你好呀, Bob"
    assert spec.turns[1].user == "Bob again, please"
    assert spec.vars == {"who": "Bob", "extra": "please"}


def test_overrides_default_to_none(tmp_path):
    path = write(tmp_path / "greeting.yaml", GREETING)
    assert load_spec(path, None).turns[0].user == "你好呀, world"
    assert load_spec(str(path)).turns[0].user == "你好呀, world"


def test_templates_render_everywhere_in_the_assistant(tmp_path):
    path = write(tmp_path / "a.yaml", """\
        vars: {bot: Helper, lang: German, n: 3}
        assistant:
          model: echo
          name: "{{ bot }}"
          instructions: |
            Answer in {{ lang }}.
            {% for i in range(n) %}{{ i }}{% endfor %}
          tools:
            - name: lookup
              description: "Lookup for {{ bot }}"
          metadata: {owner: "{{ bot | lower }}"}
        conversation:
          - user: "{{ n * 2 }}"
            expect:
              - contains: "{{ lang }}"
        """)
    spec = load_spec(path)
    assert spec.assistant.name == "Helper"
    assert spec.assistant.instructions == "Answer in German.\n012\n"
    assert spec.assistant.tools == (FunctionTool(name="lookup", description="Lookup for Helper"),)
    assert spec.assistant.metadata == {"owner": "helper"}
    assert spec.turns[0].user == "6"
    assert spec.turns[0].expect[0].arg == "German"


def test_text_without_template_markers_is_left_alone(tmp_path):
    path = write(tmp_path / "a.yaml", """\
        assistant: {model: echo}
        conversation:
          - user: "curly } and { braces, 100% sure"
        """)
    assert load_spec(path).turns[0].user == "curly } and { braces, 100% sure"


def test_numbers_become_strings(tmp_path):
    path = write(tmp_path / "n.yaml", """\
        assistant: {model: echo}
        conversation:
          - user: 42
            expect:
              - contains: 42
              - equals: 1.5
              - not_contains: 0
              - starts_with: 7
              - max_latency_ms: 1500
              - json: true
        """)
    turn = load_spec(path).turns[0]
    assert turn.user == "42"
    assert [(c.type, c.arg) for c in turn.expect] == [
        ("contains", "42"),
        ("equals", "1.5"),
        ("not_contains", "0"),
        ("starts_with", "7"),
        ("max_latency_ms", 1500),
        ("json", True),
    ]


def test_structured_check_arguments_are_kept(tmp_path):
    path = write(tmp_path / "s.yaml", tools_spec("""\
          - user: hi
            expect:
              - tool_called: {name: get_weather, arguments: {city: "{{ unit }}"}}
              - json: {schema: {type: object}}
        """))
    turn = load_spec(path).turns[0]
    assert turn.expect[0].arg == {"name": "get_weather", "arguments": {"city": "celsius"}}
    assert turn.expect[1].arg == {"schema": {"type": "object"}}
    assert turn.expect[0].where == f"{path}:15:22"


def test_expected_status_comes_from_a_status_check(tmp_path):
    path = write(tmp_path / "st.yaml", """\
        assistant: {model: echo}
        conversation:
          - user: a
          - user: b
            expect:
              - contains: x
              - status: incomplete
          - user: c
            expect: [{status: failed}]
        """)
    assert [t.expected_status for t in load_spec(path).turns] == ["completed", "incomplete", "failed"]


def test_tools_and_response_format(tmp_path):
    path = write(tmp_path / "t.yaml", """\
        assistant:
          model: echo
          temperature: 0.2
          response_format:
            type: json_schema
            json_schema: {name: r, schema: {type: object}, strict: true}
          tools:
            - name: get_weather
              parameters: {type: object, properties: {city: {type: string}}}
              strict: true
        conversation: [{user: hi}]
        """)
    assistant = load_spec(path).assistant
    assert assistant.temperature == 0.2
    assert assistant.response_format["json_schema"]["name"] == "r"
    assert assistant.tools == (
        FunctionTool(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}},
                     strict=True),
    )


# --- templates ------------------------------------------------------------------------------------


def test_undefined_variable_points_at_the_string_and_lists_vars(tmp_path):
    path = write(tmp_path / "u.yaml", GREETING.replace("  - user: Say it again", "  - user: \"Hi {{ whom }}\""))
    err = only_error(path)
    assert (err.file, err.line, err.column) == (str(path), 14, 11)
    assert err.path == "conversation[1].user"
    assert err.message == "template error: 'whom' is undefined (vars: who)"


def test_undefined_variable_lists_overrides_too_and_says_none_without_vars(tmp_path):
    path = write(tmp_path / "u.yaml", """\
        assistant:
          model: echo
          instructions: "{{ tone }}"
        conversation:
          - user: hi
        """)
    err = only_error(path)
    assert str(err) == f"{path}:3:17: assistant.instructions: template error: 'tone' is undefined (vars: none)"
    err = only_error(path, {"zeta": "1", "alpha": "2"})
    assert err.message == "template error: 'tone' is undefined (vars: alpha, zeta)"
    assert load_spec(path, {"tone": "calm"}).assistant.instructions == "calm"


def test_undefined_variable_in_a_check(tmp_path):
    path = write(tmp_path / "u.yaml", GREETING.replace('"say it"', '"{{ phrase }}"'))
    err = only_error(path)
    assert str(err) == (
        f"{path}:16:20: conversation[1].expect[0].icontains: template error: 'phrase' is undefined (vars: who)"
    )


def test_undefined_attribute_is_an_error_too(tmp_path):
    path = write(tmp_path / "u.yaml", """\
        vars: {user: {name: Ann}}
        assistant: {model: echo}
        conversation:
          - user: "{{ user.name }} {{ user.age }}"
        """)
    err = only_error(path)
    assert (err.line, err.column, err.path) == (4, 11, "conversation[0].user")
    assert "has no attribute 'age'" in err.message


def test_jinja_syntax_error(tmp_path):
    path = write(tmp_path / "j.yaml", """\
        assistant: {model: echo}
        conversation:
          - user: ok
          - user: "{% if who %}unclosed"
        vars: {who: x}
        """)
    err = only_error(path)
    assert (err.line, err.column, err.path) == (4, 11, "conversation[1].user")
    assert err.message.startswith("template error: ")
    assert "endif" in err.message


def test_sandbox_blocks_unsafe_attributes(tmp_path):
    path = write(tmp_path / "x.yaml", """\
        assistant: {model: echo}
        conversation:
          - user: "{{ ''.__class__.__mro__ }}"
        """)
    err = only_error(path)
    assert err.path == "conversation[0].user"
    assert "unsafe" in err.message


def test_every_template_error_is_reported(tmp_path):
    path = write(tmp_path / "m.yaml", """\
        assistant:
          model: echo
          instructions: "{{ a }}"
        conversation:
          - user: "{{ b }}"
            expect:
              - regex: "("
              - contains: "{{ c }}"
        """)
    errors = load_errors(path)
    assert [(e.line, e.path) for e in errors] == [
        (3, "assistant.instructions"),
        (5, "conversation[0].user"),
        (7, "conversation[0].expect[0].regex"),
        (8, "conversation[0].expect[1].contains"),
    ]


# --- regexes and JSON Schemas ---------------------------------------------------------------------


def test_invalid_regex_check(tmp_path):
    path = write(tmp_path / "r.yaml", GREETING.replace('"^你好"', '"^(你好"'))
    err = only_error(path)
    assert str(err) == (
        f"{path}:12:16: conversation[0].expect[1].regex: "
        "invalid regular expression: missing ), unterminated subpattern at position 1"
    )


def test_regex_is_checked_after_rendering(tmp_path):
    path = write(tmp_path / "r.yaml", """\
        vars: {word: "a("}
        assistant: {model: echo}
        conversation:
          - user: hi
            expect:
              - regex: "{{ word }}"
        """)
    err = only_error(path)
    assert (err.line, err.column, err.path) == (6, 16, "conversation[0].expect[0].regex")
    assert err.message.startswith("invalid regular expression:")
    path.write_text(path.read_text().replace('"a("', '"a+"'))
    assert load_spec(path).turns[0].expect[0].arg == "a+"


def test_invalid_json_schema_in_tool_parameters_points_inside_the_schema(tmp_path):
    path = write(tmp_path / "p.yaml", """\
        assistant:
          model: echo
          tools:
            - name: get_weather
              parameters:
                type: object
                properties:
                  city: {type: strin}
        conversation: [{user: hi}]
        """)
    err = only_error(path)
    assert (err.line, err.column) == (8, 24)
    assert err.path == "assistant.tools[0].parameters.properties.city.type"
    assert err.message.startswith("parameters is not a valid JSON Schema: ")
    assert "'strin'" in err.message


def test_invalid_json_schema_in_response_format_and_json_check(tmp_path):
    path = write(tmp_path / "p.yaml", """\
        assistant:
          model: echo
          response_format:
            type: json_schema
            json_schema:
              name: r
              schema: {type: object, required: yes}
        conversation:
          - user: hi
            expect:
              - json: {schema: {minLength: -1}}
        """)
    errors = load_errors(path)
    assert [(e.line, e.path) for e in errors] == [
        (7, "assistant.response_format.json_schema.schema.required"),
        (11, "conversation[0].expect[0].json.schema.minLength"),
    ]
    assert all(e.message.startswith("schema is not a valid JSON Schema: ") for e in errors)


def test_tool_declared_twice(tmp_path):
    path = write(tmp_path / "d.yaml", """\
        assistant:
          model: echo
          tools:
            - name: a
            - name: b
            - name: a
        conversation: [{user: hi}]
        """)
    assert str(only_error(path)) == f"{path}:6:13: assistant.tools[2].name: tool 'a' is declared twice"


# --- tools: outputs and tool_called ---------------------------------------------------------------


def test_tool_outputs_forms(tmp_path):
    path = write(tmp_path / "o.yaml", tools_spec("""\
          - user: hi
            tool_outputs:
              get_weather: {template: "{{ args.city }}: 20 {{ unit }} ({{ call.id }})"}
              get_time: "12:00 {{ unit }}"
          - user: again
            tool_outputs:
              get_weather: {output: {temp: 20, unit: "{{ unit }}", ok: true}}
              get_time: 42
          - user: more
            tool_outputs:
              get_weather: [1, "é"]
              get_time: {output: plain}
          - user: last
            tool_outputs:
              get_weather: false
              get_time: {output: null}
        """))
    turns = load_spec(path).turns
    assert turns[0].tool_outputs == {
        "get_weather": ToolOutput(template="{{ args.city }}: 20 {{ unit }} ({{ call.id }})"),
        "get_time": ToolOutput(output="12:00 celsius"),
    }
    assert turns[1].tool_outputs == {
        "get_weather": ToolOutput(output='{"temp": 20, "unit": "celsius", "ok": true}'),
        "get_time": ToolOutput(output="42"),
    }
    assert turns[2].tool_outputs == {
        "get_weather": ToolOutput(output='[1, "é"]'),
        "get_time": ToolOutput(output="plain"),
    }
    assert turns[3].tool_outputs == {
        "get_weather": ToolOutput(output="false"),
        "get_time": ToolOutput(output="null"),
    }


def test_tool_outputs_for_an_undeclared_tool(tmp_path):
    path = write(tmp_path / "o.yaml", tools_spec("""\
          - user: hi
            tool_outputs:
              get_wether: sunny
              translate: hola
        """))
    errors = load_errors(path)
    assert [str(e) for e in errors] == [
        f"{path}:15:7: conversation[0].tool_outputs.get_wether: "
        "no tool named 'get_wether' in assistant.tools (did you mean 'get_weather'?)",
        f"{path}:16:7: conversation[0].tool_outputs.translate: "
        "no tool named 'translate' in assistant.tools (tools: get_time, get_weather)",
    ]


def test_tool_outputs_when_no_tool_is_declared(tmp_path):
    path = write(tmp_path / "o.yaml", """\
        assistant: {model: echo}
        conversation:
          - user: hi
            tool_outputs: {lookup: x}
        """)
    err = only_error(path)
    assert (err.line, err.column, err.path) == (4, 20, "conversation[0].tool_outputs.lookup")
    assert err.message == "no tool named 'lookup' in assistant.tools (tools: none declared)"


def test_tool_called_of_an_undeclared_tool(tmp_path):
    path = write(tmp_path / "c.yaml", tools_spec("""\
          - user: hi
            expect:
              - tool_called: get_weather
              - tool_called: get_wether
              - tool_called: {name: get_tme, arguments: {}}
              - tool_called: {name: translate}
        """))
    errors = load_errors(path)
    assert [(e.line, e.column, e.path) for e in errors] == [
        (16, 22, "conversation[0].expect[1].tool_called"),
        (17, 22, "conversation[0].expect[2].tool_called"),
        (18, 22, "conversation[0].expect[3].tool_called"),
    ]
    assert [e.message for e in errors] == [
        "no tool named 'get_wether' in assistant.tools (did you mean 'get_weather'?)",
        "no tool named 'get_tme' in assistant.tools (did you mean 'get_time'?)",
        "no tool named 'translate' in assistant.tools (tools: get_time, get_weather)",
    ]


def test_tools_are_not_checked_for_an_existing_assistant(tmp_path):
    path = write(tmp_path / "e.yaml", """\
        assistant_id: asst_1
        conversation:
          - user: hi
            tool_outputs: {anything: x}
            expect: [{tool_called: anything}]
        """)
    turn = load_spec(path).turns[0]
    assert turn.tool_outputs == {"anything": ToolOutput(output="x")}
    assert turn.expect[0].arg == "anything"


def test_tool_output_template_with_an_undefined_name(tmp_path):
    path = write(tmp_path / "o.yaml", tools_spec("""\
          - user: hi
            tool_outputs:
              get_weather:
                template: "{{ args.city }} {{ unit }} {{ city }} {{ zone }}"
        """))
    err = only_error(path)
    assert (err.line, err.column) == (16, 19)
    assert err.path == "conversation[0].tool_outputs.get_weather.template"
    assert err.message == (
        "template uses undefined name(s) city, zone: "
        "use `args.<argument>` for the call's arguments or declare it in vars"
    )


def test_tool_output_template_can_use_overrides_and_its_own_names(tmp_path):
    path = write(tmp_path / "o.yaml", tools_spec("""\
          - user: hi
            tool_outputs:
              get_weather:
                template: "{% set t = args.city | upper %}{{ t }} {{ zone }}{% for x in args.days %}{{ x }}{% endfor %}"
        """))
    with pytest.raises(SpecInvalid):
        load_spec(path)
    out = load_spec(path, {"zone": "UTC"}).turns[0].tool_outputs["get_weather"]
    assert out.template.startswith("{% set t = args.city")
    assert out.output is None


def test_tool_output_template_syntax_error(tmp_path):
    path = write(tmp_path / "o.yaml", tools_spec("""\
          - user: hi
            tool_outputs:
              get_weather: {template: "{{ args.city"}
        """))
    err = only_error(path)
    assert (err.line, err.column, err.path) == (15, 31, "conversation[0].tool_outputs.get_weather.template")
    assert err.message.startswith("template error: ")


def test_fixed_tool_output_with_undefined_var(tmp_path):
    path = write(tmp_path / "o.yaml", tools_spec("""\
          - user: hi
            tool_outputs:
              get_time: "{{ clock }}"
        """))
    err = only_error(path)
    assert (err.line, err.path) == (15, "conversation[0].tool_outputs.get_time")
    assert "'clock' is undefined" in err.message


def test_fixed_tool_output_mapping_with_undefined_var_points_at_the_output(tmp_path):
    path = write(tmp_path / "o.yaml", tools_spec("""\
        - user: hi
          tool_outputs:
            get_time: {output: "{{ clock }}"}
        """))
    err = only_error(path)
    assert (err.line, err.column, err.path) == (15, 26, "conversation[0].tool_outputs.get_time.output")
    assert "'clock' is undefined" in err.message


# --- rules ----------------------------------------------------------------------------------------

RULES = """\
- user: weather in (\\w+)
  call: {name: get_weather, arguments: {city: "\\\\1"}}
- tool_output: sunny
  reply: It is sunny.
"""

RULES_SPEC = """\
assistant:
  model: scripted
backend:
  rules: {rules}
conversation:
  - user: hi
"""


def test_inline_rules(tmp_path):
    path = write(tmp_path / "r.yaml", """\
        assistant: {model: scripted}
        backend:
          provider: scripted
          rules:
            - user: "^hi$"
              reply: hello
        conversation: [{user: hi}]
        """)
    backend = load_spec(path).backend
    assert backend.provider == "scripted"
    assert backend.rules == ({"user": "^hi$", "reply": "hello"},)
    assert backend.embedded


def test_inline_rules_with_invalid_regexes(tmp_path):
    path = write(tmp_path / "r.yaml", """\
        assistant: {model: scripted}
        backend:
          rules:
            - user: "(("
              reply: a
            - tool_output: "[x"
              reply: b
        conversation: [{user: hi}]
        """)
    errors = load_errors(path)
    assert [str(e) for e in errors] == [
        f"{path}:4:13: backend.rules[0].user: invalid regular expression: "
        "missing ), unterminated subpattern at position 1",
        f"{path}:6:20: backend.rules[1].tool_output: invalid regular expression: "
        "unterminated character set at position 0",
    ]


def test_rules_file_is_resolved_against_the_spec_folder(tmp_path, monkeypatch):
    folder = tmp_path / "suite" / "nested"
    write(folder / "bot.rules.yaml", RULES)
    path = write(folder / "spec.yaml", RULES_SPEC.format(rules="bot.rules.yaml"))
    monkeypatch.chdir(tmp_path)
    spec = load_spec(Path("suite/nested/spec.yaml"))
    assert spec.backend.rules == (
        {"user": "weather in (\\w+)", "call": {"name": "get_weather", "arguments": {"city": "\\1"}}},
        {"tool_output": "sunny", "reply": "It is sunny."},
    )
    assert load_spec(path).backend.rules == spec.backend.rules


def test_rules_file_with_an_invalid_regex(tmp_path):
    rules = write(tmp_path / "bad.rules.yaml", """\
        - user: ok
          reply: fine
        - user: "(("
          reply: never
        """)
    path = write(tmp_path / "spec.yaml", RULES_SPEC.format(rules="bad.rules.yaml"))
    err = only_error(path)
    assert (err.file, err.line, err.column) == (str(rules), 3, 9)
    assert err.path == "[1].user"
    assert err.message.startswith("invalid regular expression:")


def test_rules_file_path_is_relative_to_the_spec_not_the_working_directory(tmp_path, monkeypatch):
    # a rules file next to the working directory is not the one the spec means
    write(tmp_path / "bot.rules.yaml", RULES)
    write(tmp_path / "suite" / "spec.yaml", RULES_SPEC.format(rules="bot.rules.yaml"))
    monkeypatch.chdir(tmp_path)
    err = only_error(Path("suite/spec.yaml"))
    assert str(err) == (
        f"{Path('suite/spec.yaml')}:4:10: backend.rules: rules file {Path('suite/bot.rules.yaml')} not found"
    )


def test_missing_rules_file(tmp_path):
    path = write(tmp_path / "spec.yaml", RULES_SPEC.format(rules="../elsewhere/missing.rules.yaml"))
    err = only_error(path)
    assert (err.file, err.line, err.column, err.path) == (str(path), 4, 10, "backend.rules")
    assert err.message == f"rules file {tmp_path / '../elsewhere/missing.rules.yaml'} not found"


def test_rules_path_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "rules.d").mkdir()
    path = write(tmp_path / "spec.yaml", RULES_SPEC.format(rules="rules.d"))
    assert only_error(path).message == f"rules file {tmp_path / 'rules.d'}: not a regular file (a folder)"


def test_rules_file_with_schema_errors_reports_its_own_path_and_lines(tmp_path):
    rules = write(tmp_path / "rules" / "bot.rules.yaml", """\
        - user: hi
          reply: hello
        - reply: orphan
        - user: x
          replly: y
        """)
    path = write(tmp_path / "spec.yaml", RULES_SPEC.format(rules="rules/bot.rules.yaml"))
    errors = load_errors(path)
    assert [str(e) for e in errors] == [
        f"{rules}:3:3: [1]: a rule needs exactly one trigger: `user` or `tool_output`",
        f"{rules}:4:3: [2]: a rule needs exactly one answer: `reply`, `call`, `calls` or `error`",
        f"{rules}:5:3: [2].replly: unknown field 'replly' (did you mean 'reply'?)",
    ]


def test_rules_file_that_is_not_a_list(tmp_path):
    rules = write(tmp_path / "bot.rules.yaml", "user: hi\nreply: hello\n")
    path = write(tmp_path / "spec.yaml", RULES_SPEC.format(rules="bot.rules.yaml"))
    err = only_error(path)
    assert (err.file, err.line, err.column, err.path) == (str(rules), 1, 1, "")
    assert err.message.startswith("expected a list, got a mapping")


@pytest.mark.parametrize(
    ("text", "line", "start"),
    [
        ("- user: hi\n  reply: [oops\n", 3, "YAML syntax error:"),
        ("- user: a\n  reply: b\n- user: a\n  user: c\n  reply: d\n", 4, "duplicate key 'user'"),
        ("", 1, "the file is empty"),
    ],
)
def test_rules_file_yaml_problems_report_the_rules_file(tmp_path, text, line, start):
    (tmp_path / "bot.rules.yaml").write_text(text, encoding="utf-8")
    path = write(tmp_path / "spec.yaml", RULES_SPEC.format(rules="bot.rules.yaml"))
    err = only_error(path)
    assert (err.file, err.line) == (str(tmp_path / "bot.rules.yaml"), line)
    assert err.message.startswith(start)


def test_rules_together_with_base_url(tmp_path):
    path = write(tmp_path / "b.yaml", """\
        assistant: {model: scripted}
        backend:
          base_url: http://127.0.0.1:8000/v1
          rules:
            - user: hi
              reply: hello
        conversation: [{user: hi}]
        """)
    assert str(only_error(path)) == (
        f"{path}:5:5: backend.rules: rules configure the embedded backend; they cannot go with base_url"
    )


def test_rules_file_together_with_base_url(tmp_path):
    path = write(tmp_path / "b.yaml", """\
        assistant: {model: scripted}
        backend:
          base_url: http://127.0.0.1:8000/v1
          rules: missing.rules.yaml
        conversation: [{user: hi}]
        """)
    errors = load_errors(path)
    assert [e.message for e in errors] == [
        f"rules file {tmp_path / 'missing.rules.yaml'} not found",
        "rules configure the embedded backend; they cannot go with base_url",
    ]


def test_provider_together_with_base_url(tmp_path):
    path = write(tmp_path / "b.yaml", """\
        assistant: {model: echo}
        backend: {base_url: "http://x/v1", provider: echo}
        conversation: [{user: hi}]
        """)
    err = only_error(path)
    assert (err.line, err.path) == (2, "backend.provider")
    assert err.message == "provider configures the embedded backend; it cannot go with base_url"


# --- files that are not specs ---------------------------------------------------------------------


def test_file_not_found(tmp_path):
    path = tmp_path / "nope.yaml"
    errors = load_errors(path)
    assert [str(e) for e in errors] == [f"{path}:1:1: file not found"]


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("assistant: {model: echo}\nconversation: [{user: caf\xe9}]\n".encode("latin-1"))
    err = only_error(path)
    assert (err.file, err.line, err.column) == (str(path), 2, 26)  # the byte that is not UTF-8
    assert err.message.startswith("not UTF-8 text")


@pytest.mark.parametrize("text", ["- user: hi\n- user: again\n", "just a sentence\n", "42\n", "[]\n"])
def test_a_spec_must_be_a_mapping(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    assert [str(e) for e in load_errors(path)] == [
        f"{path}:1:1: a spec is a mapping with at least `assistant` and `conversation`"
    ]


def test_yaml_errors_come_first_and_stop_loading(tmp_path):
    path = write(tmp_path / "y.yaml", """\
        assistant: {model: echo}
        conversation:
          - user: "{{ undefined }}"
        assistant: {model: echo}
        """)
    assert [str(e) for e in load_errors(path)] == [
        f"{path}:4:1: assistant: duplicate key 'assistant' (first defined on line 1)"
    ]


def test_template_errors_are_reported_beside_schema_errors(tmp_path):
    path = write(tmp_path / "s.yaml", """\
        assistant: {model: echo, tempurature: 1}
        conversation:
          - user: "{{ undefined }}"
            tool_outputs:
              lookup: {template: "{{ args.x }}"}
            expect:
              - containz: "{{ whom }}"
              - regex: "(("
        vars: {who: me}
        """)
    errors = load_errors(path)
    assert [(e.line, e.column, e.path) for e in errors] == [
        (1, 26, "assistant.tempurature"),
        (3, 11, "conversation[0].user"),
        (7, 9, "conversation[0].expect[0].containz"),
        (7, 19, "conversation[0].expect[0].containz"),
    ]
    assert errors[1].message == "template error: 'undefined' is undefined (vars: who)"
    assert errors[2].message == "unknown check 'containz' (did you mean 'contains'?)"
    assert errors[3].message == "template error: 'whom' is undefined (vars: who)"
    # tool-output templates render at run time with `args`; the `((` regex is only checked once the schema passes


# --- find_specs -----------------------------------------------------------------------------------


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x: 1\n", encoding="utf-8")
    return path


def test_find_specs_recurses_and_skips_rules_and_hidden(tmp_path):
    root = tmp_path / "specs"
    for name in [
        "b.yaml", "a.yml", "notes.txt", "bot.rules.yaml", "bot.rules.yml", "yaml",
        "sub/c.yaml", "sub/deeper/d.yml", "sub/deeper/e.rules.yaml",
        ".hidden/h.yaml", "sub/.git/config.yaml", ".dot.yaml", "sub/.also.yml",
    ]:
        touch(root / name)
    (root / "dir.yaml").mkdir()  # a folder named like a spec is not a file
    assert find_specs([root]) == [
        root / "a.yml",
        root / "b.yaml",
        root / "sub" / "c.yaml",
        root / "sub" / "deeper" / "d.yml",
    ]


def test_find_specs_keeps_files_in_the_order_given(tmp_path):
    z, a, m = touch(tmp_path / "z.yaml"), touch(tmp_path / "a.yaml"), touch(tmp_path / "m.yaml")
    assert find_specs([z, a, str(m)]) == [z, a, m]


def test_find_specs_keeps_explicit_files_even_if_they_would_be_skipped(tmp_path):
    rules = touch(tmp_path / "x.rules.yaml")
    missing = tmp_path / "missing.yaml"
    text = touch(tmp_path / "spec.txt")
    assert find_specs([rules, missing, text]) == [rules, missing, text]


def test_find_specs_removes_duplicates_keeping_the_first(tmp_path):
    root = tmp_path / "suite"
    a, b = touch(root / "a.yaml"), touch(root / "b.yaml")
    assert find_specs([b, root, a, root, str(b)]) == [b, a]


def test_find_specs_mixes_files_and_folders_in_order(tmp_path):
    one = touch(tmp_path / "one" / "x.yaml")
    two = touch(tmp_path / "two.yaml")
    three = touch(tmp_path / "three" / "y.yaml")
    assert find_specs([tmp_path / "one", two, tmp_path / "three"]) == [one, two, three]


def test_find_specs_works_from_a_hidden_parent_folder(tmp_path):
    root = tmp_path / ".config" / "specs"
    spec = touch(root / "a.yaml")
    assert find_specs([root]) == [spec]


def test_find_specs_of_nothing(tmp_path):
    assert find_specs([]) == []
    assert find_specs([tmp_path]) == []


def test_found_specs_load(tmp_path):
    write(tmp_path / "suite" / "greeting.yaml", GREETING)
    write(tmp_path / "suite" / "other" / "second.yaml", GREETING.replace("name: greeting\n", ""))
    specs = [load_spec(p) for p in find_specs([tmp_path / "suite"])]
    assert [s.name for s in specs] == ["greeting", "second"]
