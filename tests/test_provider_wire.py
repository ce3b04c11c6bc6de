"""What the live providers put on the wire for llama.cpp-family servers, and which failures they retry.

Against a fake upstream on loopback: the exact Responses input items and Chat Completions messages of a
conversation with a tool round trip, and the retry policy (a refusal answered with a 5xx is sent once).
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from conftest import run_async
from fake_upstream import chat_body, error_body, fake_upstream, response_body

from runner.engine.backend import BackendTarget, embedded_client
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.expect import judge
from runner.server.app import Backend, BackendSettings
from runner.server.providers import LiveSettings, UpstreamConfig
from runner.server.providers.retries import refuses_the_request

FAST_RETRY = {"retry-after-ms": "10"}  # the SDK's backoff would otherwise wait half a second per retry
TWO_TURNS_WITH_A_TOOL = """
assistant:
  model: {model}
  instructions: Be brief.
  tools:
    - name: get_weather
      parameters: {{type: object, properties: {{city: {{type: string}}}}}}
conversation:
  - user: Weather in Paris?
    tool_outputs: {{get_weather: '21 C'}}
  - user: And tomorrow?
"""


def _converse(write_spec, text: str, live: LiveSettings) -> Any:  # type: ignore[no-untyped-def]
    from runner.spec import load_spec

    spec = load_spec(write_spec(text))

    async def go() -> Any:
        client = embedded_client(Backend(BackendSettings(live=live)))
        transcript = await run_conversation(spec, client, BackendTarget(spec.backend), AssistantPool(client),
                                            EngineOptions(timeout=30))
        await client.close()
        return await judge(spec, transcript)

    return run_async(go())


def _live(url: str, kind: str, max_retries: int = 2) -> LiveSettings:
    return LiveSettings(**{kind: UpstreamConfig(base_url=url, api_key="k", max_retries=max_retries)},  # type: ignore[arg-type]
                        default=kind)


def test_responses_input_items_are_sent_in_their_full_typed_form(write_spec) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(calls=[("get_weather", {"city": "Paris"})]), {}),
                   (200, response_body(text="21 C in Paris."), {}), (200, response_body(text="No idea."), {}))
        transcript = _converse(write_spec, TWO_TURNS_WITH_A_TOOL.format(model="openai/m"), _live(fake.url, "openai"))
        _, after_the_call, second_turn = fake.bodies("/responses")
    assert transcript.verdict == "passed", transcript.failures()
    first_question = {"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": "Weather in Paris?"}]}
    # llama.cpp answers 400 "Cannot determine type of 'item'" to untyped items
    assert after_the_call["input"] == [
        first_question,
        {"type": "function_call", "call_id": "call_fake0", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_fake0", "output": "21 C"},
    ]
    assert second_turn["input"] == [
        first_question,
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "21 C in Paris."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]},
    ]
    # llama.cpp refuses previous_response_id: the whole conversation goes each time
    assert not any("previous_response_id" in body for body in (after_the_call, second_turn))


def test_chat_tool_call_messages_have_no_content_key(write_spec) -> None:  # type: ignore[no-untyped-def]
    calls = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    with fake_upstream() as fake:
        fake.queue("/chat/completions", (200, chat_body(calls=calls), {}),
                   (200, chat_body(text="Both 21 C."), {}), (200, chat_body(text="No idea."), {}))
        transcript = _converse(write_spec, TWO_TURNS_WITH_A_TOOL.format(model="chat/m"), _live(fake.url, "chat"))
        after_the_calls = fake.bodies("/chat/completions")[1]
    assert transcript.verdict == "passed", transcript.failures()
    assert [m["role"] for m in after_the_calls["messages"]] == ["system", "user", "assistant", "tool", "tool"]
    # both calls share one assistant turn, with no `content` key (llama-cpp-python answers 500 to a null one)
    assert after_the_calls["messages"][2] == {"role": "assistant", "tool_calls": [
        {"id": "call_chat0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_chat1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
    ]}


@pytest.mark.parametrize(("status", "body", "attempts", "code", "words"), [
    (500, error_body("Invalid 'messages': content must be a string"), 1, "invalid_prompt",
     "refused the request (500, not retried): Invalid 'messages'"),
    (500, {"error": {"message": 'can only concatenate str (not "NoneType") to str', "type": "internal_server_error",
                     "param": None, "code": None}}, 1, "invalid_prompt", "can only concatenate"),  # llama-cpp-python
    (500, {"error": {"code": 500, "message": "input (701 tokens) is too large to process. increase the physical "
                     "batch size (current batch size: 512)", "type": "server_error"}}, 1, "invalid_prompt",
     "too large to process"),  # llama.cpp: the same input is as large the next time
    (501, {"error": {"code": 501, "message": "This server does not support embeddings.",
                     "type": "not_supported_error"}}, 1, "invalid_prompt", "refused the request (501, not retried)"),
    (500, error_body("The server had an error while processing your request.", "server_error"), 3, "server_error",
     "upstream error 500 after retries"),
    (503, error_body("Loading model", "unavailable_error"), 3, "server_error", "upstream error 503 after retries"),
])
def test_only_retryable_failures_are_retried(write_spec, status, body, attempts, code, words) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        fake.queue("/chat/completions", *[(status, body, FAST_RETRY)] * 3)
        transcript = _converse(write_spec, "assistant: {model: chat/m}\nconversation: [{user: hi}]\n",
                               _live(fake.url, "chat"))
        sent = len(fake.bodies("/chat/completions"))
    turn = transcript.turns[0]
    assert sent == attempts
    assert turn.status == "failed" and turn.last_error["code"] == code, turn.last_error
    assert turn.last_error["message"].startswith("chat provider: ") and words in turn.last_error["message"]


def test_a_503_then_success_completes_and_a_refusal_is_sent_once_per_model_call(write_spec) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        fake.queue("/chat/completions", (503, error_body("busy", "server_error"), FAST_RETRY),
                   (200, chat_body(text="fine"), {}))
        transcript = _converse(write_spec, "assistant: {model: chat/m}\nconversation: [{user: hi}]\n",
                               _live(fake.url, "chat"))
        sent = len(fake.bodies("/chat/completions"))
    assert sent == 2 and transcript.turns[0].status == "completed" and transcript.turns[0].reply == "fine"


def test_an_explicit_x_should_retry_still_wins(write_spec) -> None:  # type: ignore[no-untyped-def]
    with fake_upstream() as fake:
        fake.queue("/chat/completions", (500, error_body("invalid state, try again"), {**FAST_RETRY, "x-should-retry": "true"}),
                   (200, chat_body(text="fine"), {}))
        transcript = _converse(write_spec, "assistant: {model: chat/m}\nconversation: [{user: hi}]\n",
                               _live(fake.url, "chat"))
    assert transcript.turns[0].status == "completed"


@pytest.mark.parametrize(("status", "content", "refused"), [
    (500, b"Invalid request: 'messages' is required", True),  # a plain-text body
    (500, json.dumps({"detail": "Validation failed"}).encode(), True),  # FastAPI's shape
    (500, json.dumps({"error": {"message": "boom", "type": "invalid_request_error"}}).encode(), True),
    (500, json.dumps({"error": {"message": "CUDA out of memory", "type": "server_error"}}).encode(), False),
    (500, b"", False),
    (502, json.dumps({"error": {"message": "invalid upstream", "type": "invalid_request_error"}}).encode(), False),
    (501, b"", True),
])
def test_which_5xx_answers_are_refusals(status: int, content: bytes, refused: bool) -> None:
    response = httpx2.Response(status, content=content, request=httpx2.Request("POST", "http://x/v1/chat/completions"))
    assert refuses_the_request(response) is refused
