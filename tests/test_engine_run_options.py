"""A turn's `run:` options reach its run on the embedded backend, for that run only, on every way a run starts."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import run_async

from runner.engine.backend import BackendTarget
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.expect import judge
from runner.report.transcript import Transcript
from runner.server.app import Backend, BackendSettings
from runner.spec import load_spec

SPEC = """
assistant:
  model: scripted
  temperature: 0.7
  tools:
    - name: get_weather
      parameters: {{type: object, properties: {{city: {{type: string}}}}}}
    - name: get_time
backend:
  stream: {stream}
  rules:
    - user: "weather in (\\\\w+)"
      reply: "no tool needed"
    - user: "weather in (\\\\w+)"
      call: {{name: get_weather, arguments: {{city: "\\\\1"}}}}
    - user: "time"
      call: {{name: get_time}}
    - tool_output: "(\\\\d+)"
      reply: "it is \\\\1 degrees"
    - user: ".*"
      reply: "fallback"
conversation:
{conversation}
"""


def _client(backend: Backend) -> Any:
    """An SDK client on `backend` whose closing leaves the backend open, to look into its store afterwards."""
    import httpx2
    from openai import AsyncOpenAI

    from runner.engine.asgi import StreamingASGITransport
    from runner.server.app import create_app

    http = httpx2.AsyncClient(transport=StreamingASGITransport(create_app(backend)), base_url="http://embedded.runner/v1")
    return AsyncOpenAI(api_key="x", base_url="http://embedded.runner/v1", http_client=http, max_retries=0)


def converse(write_spec: Any, conversation: str, *, stream: bool = True) -> tuple[Transcript, list[dict[str, Any]]]:
    """Run the conversation on a fresh embedded backend: its judged transcript, and each turn's stored run."""
    spec = load_spec(write_spec(SPEC.format(stream=str(stream).lower(), conversation=conversation)))
    backend = Backend(BackendSettings(rules=spec.backend.rules))

    async def go() -> tuple[Transcript, list[dict[str, Any]]]:
        client = _client(backend)
        try:
            transcript = await run_conversation(spec, client, BackendTarget(spec.backend), AssistantPool(client),
                                                EngineOptions())
            runs = [backend.store.get("run", turn.run_id) for turn in transcript.turns if turn.run_id]
            return await judge(spec, transcript), runs
        finally:
            await client.close()
            await backend.aclose()

    return run_async(go())


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "poll"])
def test_tool_choice_forces_a_function_on_the_scripted_model(write_spec: Any, stream: bool) -> None:
    transcript, runs = converse(write_spec, """
  - user: weather in Paris
    run: {tool_choice: get_weather}
    tool_outputs: {get_weather: "21"}
    expect: [{tool_called: {name: get_weather, arguments: {city: Paris}}}, {equals: it is 21 degrees}]
  - user: weather in Oslo
    expect: [{equals: no tool needed}, {not: {tool_called: get_weather}}]
  - user: weather in Rome
    run: {tool_choice: {type: function, function: {name: get_weather}}}
    tool_outputs: {get_weather: "25"}
    expect: [{equals: it is 25 degrees}]
""", stream=stream)
    assert transcript.verdict == "passed", transcript.failures()
    forced = {"type": "function", "function": {"name": "get_weather"}}
    # the first turn's run starts with create_and_run, the others with runs.create: both carry it
    assert [r["tool_choice"] for r in runs] == [forced, "auto", forced]
    assert [r["status"] for r in runs] == ["completed"] * 3


def test_tool_choice_none_and_required_steer_the_run(write_spec: Any) -> None:
    transcript, runs = converse(write_spec, """
  - user: what time is it
    run: {tool_choice: none}
    expect: [{equals: fallback}]
  - user: what time is it
    run: {tool_choice: required}
    tool_outputs: {get_time: "12"}
    expect: [{tool_called: get_time}, {equals: it is 12 degrees}]
""")
    assert transcript.verdict == "passed", transcript.failures()
    assert [r["tool_choice"] for r in runs] == ["none", "required"]


@pytest.mark.parametrize("first", [True, False], ids=["create_and_run", "runs.create"])
def test_every_run_option_reaches_the_run_and_only_that_run(write_spec: Any, first: bool) -> None:
    options = """
    run:
      model: echo
      temperature: 0.2
      top_p: 0.5
      max_prompt_tokens: 1000
      max_completion_tokens: 300
      response_format: {type: json_object}
      parallel_tool_calls: false
      truncation_strategy: {type: last_messages, last_messages: 2}"""
    turns = ["  - user: hello one", "  - user: hello two", "  - user: hello three"]
    at = 0 if first else 1
    turns[at] += options
    transcript, runs = converse(write_spec, "\n".join(turns) + "\n")
    assert transcript.verdict == "passed", transcript.failures()
    tuned, plain = runs[at], runs[2]
    assert (tuned["model"], tuned["temperature"], tuned["top_p"]) == ("echo", 0.2, 0.5)
    assert (tuned["max_prompt_tokens"], tuned["max_completion_tokens"]) == (1000, 300)
    assert tuned["response_format"] == {"type": "json_object"} and tuned["parallel_tool_calls"] is False
    assert tuned["truncation_strategy"] == {"type": "last_messages", "last_messages": 2}
    assert transcript.turns[at].reply == f"hello {'one' if first else 'two'}"  # echo answered, not scripted
    # a turn without options runs with the assistant's settings and the API's defaults
    assert (plain["model"], plain["temperature"], plain["top_p"]) == ("scripted", 0.7, 1.0)
    assert (plain["max_prompt_tokens"], plain["max_completion_tokens"]) == (None, None)
    assert plain["tool_choice"] == "auto" and plain["parallel_tool_calls"] is True
    assert plain["truncation_strategy"]["type"] == "auto"


def test_options_go_with_additional_instructions_on_a_first_turn(write_spec: Any) -> None:
    transcript, runs = converse(write_spec, """
  - user: weather in Lima
    additional_instructions: be brief
    run: {tool_choice: get_weather, temperature: 0.1}
    tool_outputs: {get_weather: "18"}
    expect: [{equals: it is 18 degrees}]
""")
    assert transcript.verdict == "passed", transcript.failures()
    (run,) = runs
    assert run["temperature"] == 0.1 and run["tool_choice"]["function"]["name"] == "get_weather"


def test_preflight_checks_a_turns_model(write_spec: Any) -> None:
    from runner.engine.backend import preflight, resolve_backend

    spec = load_spec(write_spec(SPEC.format(stream="true", conversation="""
  - user: hi
    run: {model: gpt-4o}
""")))
    (problem,) = preflight(spec, resolve_backend(spec))
    where = spec.turns[0].run.model_where
    assert where.startswith(f"{spec.file}:") and where.endswith(":24:18")
    assert problem.startswith(f"{where}: conversation[0].run.model: the model 'gpt-4o' goes to the `openai` provider")


def test_a_completion_budget_cuts_the_reply_and_the_turn_can_expect_it(write_spec: Any) -> None:
    transcript, runs = converse(write_spec, """
  - user: hello there my friend
    run: {model: echo, max_completion_tokens: 2}
    expect: [{status: incomplete}, {equals: hello there}]
  - user: hello again
    expect: [{equals: fallback}]
""")
    assert transcript.verdict == "passed", transcript.failures()
    assert runs[0]["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert runs[1]["max_completion_tokens"] is None and runs[1]["status"] == "completed"
