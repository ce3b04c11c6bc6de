"""Run options the API defines, enforced by the backend on every provider: truncation, token budgets,
tool_choice, parallel_tool_calls, per-run overrides, additional messages."""

from __future__ import annotations

import openai
import pytest
from server_helpers import WEATHER_TOOL, Env, check, serve, text_of

from runner.server.providers import ModelReply, ModelRequest

LOOKUP_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


class Recording:
    """A provider that remembers every request and answers with a fixed reply."""

    name = "recording"

    def __init__(self, reply: ModelReply | None = None) -> None:
        self.requests: list[ModelRequest] = []
        self.reply = reply

    async def respond(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        return self.reply or ModelReply(text="ok", prompt_tokens=1, completion_tokens=1)


def test_truncation_last_messages_limits_the_context() -> None:
    async def body(env: Env) -> None:
        recording = Recording()
        env.backend.providers.providers["openai"] = recording  # type: ignore[assignment]
        a = await env.assistant("gpt-test")
        t = await env.thread("one", "two", "three", "four")
        await env.client.beta.threads.runs.create_and_poll(
            thread_id=t.id, assistant_id=a.id, truncation_strategy={"type": "last_messages", "last_messages": 2})
        await env.client.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        limited, full = recording.requests
        assert [i["content"] for i in limited.items] == ["three", "four"]
        assert [i["content"] for i in full.items] == ["one", "two", "three", "four", "ok"]

    serve(body)


def test_max_prompt_tokens_drops_old_messages_then_ends_incomplete() -> None:
    async def body(env: Env) -> None:
        a = await env.assistant()
        t = await env.thread("alpha beta gamma", "delta epsilon", "zeta")
        run = check(await env.client.beta.threads.runs.create_and_poll(
            thread_id=t.id, assistant_id=a.id, max_prompt_tokens=3))
        assert run.status == "completed" and run.usage.prompt_tokens <= 3  # type: ignore[union-attr]
        t2 = await env.thread("far too many words for this tiny budget")
        run = check(await env.client.beta.threads.runs.create_and_poll(
            thread_id=t2.id, assistant_id=a.id, max_prompt_tokens=2))
        assert run.status == "incomplete"
        assert run.incomplete_details.reason == "max_prompt_tokens"  # type: ignore[union-attr]
        # the thread is free again
        await env.client.beta.threads.messages.create(t2.id, role="user", content="short")

    serve(body)


def test_max_completion_tokens_cuts_the_reply_and_ends_incomplete() -> None:
    async def body(env: Env) -> None:
        a = await env.assistant()
        t = await env.thread("one two three four five")
        events = [e async for e in await env.client.beta.threads.runs.create(
            thread_id=t.id, assistant_id=a.id, max_completion_tokens=3, stream=True)]
        kinds = [e.event for e in events]
        assert "thread.message.incomplete" in kinds and kinds[-1] == "thread.run.incomplete"
        run = events[-1].data
        assert run.incomplete_details.reason == "max_completion_tokens" and run.usage.completion_tokens == 3
        (message,) = [m for m in await env.messages(t.id) if m.role == "assistant"]
        assert text_of(message) == "one two three"
        assert message.status == "incomplete" and message.incomplete_details.reason == "max_tokens"

    serve(body)


def test_tool_choice_steers_the_scripted_model_and_is_enforced() -> None:
    rules = [
        {"user": "weather", "call": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"user": "weather", "reply": "no tools needed"},
    ]

    async def body(env: Env) -> None:
        a = await env.assistant("scripted", tools=[WEATHER_TOOL, LOOKUP_TOOL])
        t = await env.thread("weather please")
        run = await env.client.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id, tool_choice="none")
        assert run.status == "completed"
        assert text_of((await env.messages(t.id))[0]) == "no tools needed"
        await env.client.beta.threads.messages.create(t.id, role="user", content="weather again")
        run = await env.client.beta.threads.runs.create_and_poll(
            thread_id=t.id, assistant_id=a.id, tool_choice={"type": "function", "function": {"name": "lookup"}})
        assert run.status == "failed" and "no `user` rule matches" in run.last_error.message  # type: ignore[union-attr]
        echo = await env.assistant("echo", tools=[WEATHER_TOOL])
        t2 = await env.thread("hi")
        run = await env.client.beta.threads.runs.create_and_poll(thread_id=t2.id, assistant_id=echo.id,
                                                                 tool_choice="required")
        assert run.status == "failed" and "tool_choice is 'required'" in run.last_error.message  # type: ignore[union-attr]
        with pytest.raises(openai.BadRequestError) as info:
            await env.client.beta.threads.runs.create(
                thread_id=t2.id, assistant_id=a.id, tool_choice={"type": "function", "function": {"name": "nope"}})
        assert "nope" in str(info.value)

    serve(body, rules=rules)


def test_parallel_tool_calls_false_keeps_one_call() -> None:
    async def body(env: Env) -> None:
        a = await env.scripted()
        t = await env.thread("compare Oslo and Rome")
        run = await env.client.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id,
                                                                 parallel_tool_calls=False)
        assert run.status == "requires_action"
        calls = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
        assert [c.function.arguments for c in calls] == ['{"city": "Oslo"}']

    serve(body)


def test_per_run_overrides_and_additional_messages() -> None:
    async def body(env: Env) -> None:
        recording = Recording()
        env.backend.providers.providers["openai"] = recording  # type: ignore[assignment]
        a = await env.assistant("echo", instructions="base", temperature=0.5)
        t = await env.thread("first")
        run = check(await env.client.beta.threads.runs.create_and_poll(
            thread_id=t.id, assistant_id=a.id, model="gpt-override", instructions="override",
            additional_instructions="and more", temperature=0.1, top_p=0.9, tools=[WEATHER_TOOL],
            additional_messages=[{"role": "user", "content": "second"}]))
        assert run.model == "gpt-override" and run.instructions == "override\n\nand more"
        (request,) = recording.requests
        assert request.model == "gpt-override" and request.instructions == "override\n\nand more"
        assert request.temperature == 0.1 and request.top_p == 0.9
        assert [t["function"]["name"] for t in request.tools] == ["get_weather"]
        assert [i["content"] for i in request.items] == ["first", "second"]

    serve(body)


@pytest.mark.parametrize(("options", "param"), [
    ({"max_prompt_tokens": 0}, "max_prompt_tokens"),
    ({"max_completion_tokens": -5}, "max_completion_tokens"),
    ({"truncation_strategy": {"type": "middle"}}, "truncation_strategy.type"),
    ({"truncation_strategy": {"type": "last_messages", "last_messages": 0}}, "truncation_strategy.last_messages"),
    ({"tool_choice": {"type": "function", "function": {"name": "missing"}}}, "tool_choice.function.name"),
])
def test_invalid_run_options_are_400_naming_the_param(options, param) -> None:  # type: ignore[no-untyped-def]
    async def body(env: Env) -> None:
        a = await env.assistant()
        t = await env.thread("hi")
        with pytest.raises(openai.BadRequestError) as info:
            await env.client.beta.threads.runs.create(thread_id=t.id, assistant_id=a.id, **options)
        assert info.value.body["param"] == param  # type: ignore[index]

    serve(body)
