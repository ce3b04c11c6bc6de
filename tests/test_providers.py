"""The live providers against a fake upstream on loopback: request mapping, tool calls, usage, errors, retries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import run_async
from fake_upstream import chat_body, error_body, fake_upstream, response_body

from runner.engine.backend import BackendTarget, embedded_client
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.expect import judge
from runner.server.app import Backend, BackendSettings
from runner.server.providers import LiveSettings, UpstreamConfig, model_problem, route
from runner.spec import load_spec

KEY = "sk-upstream-" + "z9" * 16
WEATHER = """
assistant:
  model: {model}
  instructions: Be brief.
  temperature: 0.3
  tools:
    - name: get_weather
      description: Weather in a city.
      parameters: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}
conversation:
  - user: Weather in Paris?
    tool_outputs:
      get_weather: {{template: '{{"city": "{{{{ args.city }}}}", "celsius": 21}}'}}
    expect:
      - tool_called: {{name: get_weather, arguments: {{city: Paris}}}}
      - contains: "21"
"""


def _converse(write_spec, text: str, live: LiveSettings) -> Any:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec(text))

    async def go() -> Any:
        client = embedded_client(Backend(BackendSettings(live=live)))
        transcript = await run_conversation(spec, client, BackendTarget(spec.backend), AssistantPool(client),
                                            EngineOptions(timeout=30))
        await client.close()
        return await judge(spec, transcript)

    return run_async(go())


def _live(fake: Any, kind: str = "openai", **options: Any) -> LiveSettings:
    config = UpstreamConfig(base_url=fake.url, api_key=KEY, **options)
    return LiveSettings(**{kind: config}, default=kind)  # type: ignore[arg-type]


def test_openai_provider_maps_the_run_to_the_responses_api(write_spec) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(calls=[("get_weather", {"city": "Paris"})]), {}),
                   (200, response_body(text="It is 21 degrees in Paris.", input_tokens=40, output_tokens=9), {}))
        transcript = _converse(write_spec, WEATHER.format(model="gpt-test"), _live(fake))
        first, second = fake.bodies("/responses")
        headers = fake.received[0].headers
    assert transcript.verdict == "passed", transcript.failures()
    turn = transcript.turns[0]
    assert turn.reply == "It is 21 degrees in Paris."
    assert turn.tool_calls[0].id == "call_fake0"
    assert turn.usage == {"prompt_tokens": 51, "completion_tokens": 16, "total_tokens": 67}
    assert headers["authorization"] == f"Bearer {KEY}"
    assert first["model"] == "gpt-test" and first["instructions"] == "Be brief." and first["temperature"] == 0.3
    assert first["input"] == [{"type": "message", "role": "user",
                               "content": [{"type": "input_text", "text": "Weather in Paris?"}]}]
    assert first["tools"] == [{"type": "function", "name": "get_weather", "description": "Weather in a city.",
                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                              "required": ["city"]}, "strict": False}]
    assert first["store"] is False
    assert second["input"][1:] == [
        {"type": "function_call", "call_id": "call_fake0", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_fake0", "output": '{"city": "Paris", "celsius": 21}'},
    ]


def test_chat_provider_maps_the_run_to_chat_completions(write_spec) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        fake.queue("/chat/completions", (200, chat_body(calls=[("get_weather", {"city": "Paris"})]), {}),
                   (200, chat_body(text="21 in Paris."), {}))
        transcript = _converse(write_spec, WEATHER.format(model="chat/llama3.2"), _live(fake, "chat"))
        first, second = fake.bodies("/chat/completions")
    assert transcript.verdict == "passed", transcript.failures()
    assert first["model"] == "llama3.2"  # the provider prefix is not sent upstream
    assert first["messages"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Weather in Paris?"}]
    assert first["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    assert second["messages"][2:] == [
        {"role": "assistant", "tool_calls": [  # no `content`: llama.cpp-family servers refuse a null one
            {"id": "call_chat0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_chat0", "content": '{"city": "Paris", "celsius": 21}'},
    ]
    assert transcript.turns[0].usage == {"prompt_tokens": 26, "completion_tokens": 10, "total_tokens": 36}


def test_response_format_and_parallel_calls_reach_the_upstream(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = """
    assistant:
      model: gpt-test
      response_format: {type: json_schema, json_schema: {name: answer, strict: true, schema: {type: object}}}
    conversation: [{user: hi, expect: [{json: true}]}]
    """
    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(text='{"ok": true}'), {}))
        transcript = _converse(write_spec, spec, _live(fake))
        (body,) = fake.bodies("/responses")
    assert transcript.verdict == "passed"
    assert body["text"] == {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"},
                                       "strict": True}}


@pytest.mark.parametrize(("status", "headers", "code", "words"), [
    (401, {}, "server_error", "rejected the credentials (401)"),
    (429, {"retry-after": "0"}, "rate_limit_exceeded", "rate limited upstream (429)"),
    (500, {}, "server_error", "upstream error 500"),
    (400, {}, "invalid_prompt", "refused the request (400)"),
])
def test_upstream_errors_fail_the_run_with_a_meaningful_error(write_spec, status, headers, code, words) -> None:  # type: ignore[no-untyped-def]
    retryable = status in (429, 500)
    with fake_upstream() as fake:
        message = f"nope, and your key {KEY} is echoed here"
        type_ = "server_error" if status >= 500 else "invalid_request_error"  # a 500 naming a bad request is not retried
        fake.queue("/responses", *[(status, error_body(message, type_), headers)] * 3)
        transcript = _converse(write_spec, "assistant: {model: gpt-test}\nconversation: [{user: hi}]\n",
                               _live(fake, max_retries=2))
        attempts = len(fake.received)
    turn = transcript.turns[0]
    assert turn.status == "failed"
    assert turn.last_error["code"] == code and words in turn.last_error["message"]
    assert KEY not in json.dumps(transcript.to_dict()) and "<OPENAI_API_KEY>" in turn.last_error["message"]
    assert attempts == (3 if retryable else 1)  # bounded retries, for the retryable ones only


def test_a_retryable_error_then_success_completes(write_spec) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        fake.queue("/chat/completions", (503, error_body("busy"), {"retry-after": "0"}),
                   (200, chat_body(text="fine"), {}))
        transcript = _converse(write_spec, "assistant: {model: chat/m}\nconversation: [{user: hi}]\n",
                               _live(fake, "chat"))
    assert transcript.turns[0].status == "completed" and transcript.turns[0].reply == "fine"


def test_upstream_timeout_fails_the_run(write_spec) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        fake.delay = 2.0
        fake.queue("/responses", *[(200, response_body(text="late"), {})] * 2)
        transcript = _converse(write_spec, "assistant: {model: gpt-test}\nconversation: [{user: hi}]\n",
                               _live(fake, max_retries=1, timeout=0.3))
    turn = transcript.turns[0]
    assert turn.status == "failed" and "did not answer in time" in turn.last_error["message"]


@pytest.mark.parametrize("kind", ["openai", "chat"])
def test_a_reply_cut_by_the_token_budget_ends_incomplete(write_spec, kind) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        if kind == "openai":
            fake.queue("/responses", (200, response_body(text="Once upon a", incomplete="max_output_tokens"), {}))
        else:
            fake.queue("/chat/completions", (200, chat_body(text="Once upon a", finish_reason="length"), {}))
        transcript = _converse(write_spec, f"assistant: {{model: {kind}/m}}\n"
                                           "conversation: [{user: story, expect: [{status: incomplete}]}]\n",
                               _live(fake, kind))
    turn = transcript.turns[0]
    assert transcript.verdict == "passed", transcript.failures()
    assert turn.incomplete_details == {"reason": "max_completion_tokens"}
    assert turn.reply == "Once upon a"


def test_model_names_route_to_providers() -> None:
    assert route("echo", None, "openai") == ("echo", "echo")
    assert route("gpt-4o", None, "openai") == ("openai", "gpt-4o")
    assert route("chat/llama3.2", None, "openai") == ("chat", "llama3.2")
    assert route("chat/meta-llama/Llama-3-8B", None, "openai") == ("chat", "meta-llama/Llama-3-8B")
    assert route("meta-llama/Llama-3-8B", None, "chat") == ("chat", "meta-llama/Llama-3-8B")
    assert route("gpt-4o", "echo", "openai") == ("echo", "gpt-4o")
    live = LiveSettings.from_env({"RUNNER_CHAT_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert live.default == "chat" and live.openai is None
    assert model_problem("llama3.2", force=None, has_rules=False, live=live) is None
    assert "OPENAI_API_KEY" in (model_problem("openai/gpt-4o", force=None, has_rules=False, live=live) or "")
    both = LiveSettings.from_env({"OPENAI_API_KEY": KEY, "RUNNER_CHAT_BASE_URL": "http://x/v1"})
    assert both.default == "openai" and KEY not in repr(both)
