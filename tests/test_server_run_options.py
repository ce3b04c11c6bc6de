"""Run options the API defines, enforced by the backend on every provider: truncation, token budgets,
tool_choice, parallel_tool_calls, per-run overrides, additional messages."""

from __future__ import annotations

import openai
import pytest
from server_helpers import WEATHER_TOOL, Env, check, error_json, serve, text_of

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


def test_a_forced_call_binds_the_first_model_call_only() -> None:
    """Once the forced call's outputs are in, the model answers them freely (else a forced run never ends)."""
    rules = [
        {"user": "weather", "reply": "no tools needed"},
        {"user": "weather in (\\w+)", "call": {"name": "get_weather", "arguments": {"city": "\\1"}}},
        {"tool_output": "(\\d+)", "reply": "It is \\1 degrees."},
    ]

    async def body(env: Env) -> None:
        a = await env.assistant("scripted", tools=[WEATHER_TOOL, LOOKUP_TOOL])
        forced = {"type": "function", "function": {"name": "get_weather"}}
        for choice in (forced, "required"):
            t = await env.thread("weather in Oslo")
            run = await env.client.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id,
                                                                     tool_choice=choice)  # type: ignore[arg-type]
            assert run.status == "requires_action", run.last_error
            (call,) = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
            run = check(await env.client.beta.threads.runs.submit_tool_outputs_and_poll(
                run_id=run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": call.id, "output": "4"}]))
            assert run.status == "completed" and run.to_dict()["tool_choice"] == choice  # stored as given
            assert text_of((await env.messages(t.id))[0]) == "It is 4 degrees."

    serve(body, rules=rules)


FILE_SEARCH = {"type": "file_search"}
CODE_INTERPRETER = {"type": "code_interpreter"}


@pytest.mark.parametrize("kind", ["file_search", "code_interpreter"])
def test_a_built_in_tool_choice_is_accepted_when_the_run_has_that_tool(kind: str) -> None:
    """Stored and answered as given. A forced file_search searches first (this thread has no stores: no
    results) and the model answers from it; code_interpreter is not run yet, so the model answers as with
    `auto` and the budget policing lets the answer stand."""

    async def body(env: Env) -> None:
        c = env.client
        # the scripted model answers a search's output with `tool_output` rules: echo needs none
        a = await env.assistant("echo" if kind == "file_search" else "scripted", tools=[{"type": kind}, WEATHER_TOOL])
        t = await env.thread("hello Ada")
        run = check(await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id,
                                                              tool_choice={"type": kind}))  # type: ignore[arg-type]
        assert run.status == "completed" and run.tool_choice.type == kind  # type: ignore[union-attr]
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).tool_choice.type == kind  # type: ignore[union-attr]
        assert text_of((await env.messages(t.id))[0]) == ("hello Ada" if kind == "file_search" else "Hi Ada!")
        steps = (await c.beta.threads.runs.steps.list(run.id, thread_id=t.id, order="asc")).data
        assert [s.type for s in steps] == (["tool_calls", "message_creation"] if kind == "file_search"
                                           else ["message_creation"])
        # the run's own tools count, not only the assistant's; and create_and_run and streams take it too
        echo = await env.assistant("echo")
        events = [e async for e in await c.beta.threads.create_and_run(
            assistant_id=echo.id, tools=[{"type": kind}], tool_choice={"type": kind},  # type: ignore[arg-type, list-item]
            thread={"messages": [{"role": "user", "content": "streamed"}]}, stream=True)]
        assert events[-1].event == "thread.run.completed"
        assert events[-1].data.tool_choice.type == kind  # type: ignore[union-attr]

    serve(body)


@pytest.mark.parametrize("choice", [FILE_SEARCH, CODE_INTERPRETER])
def test_a_built_in_tool_choice_without_that_tool_is_a_400(choice: dict[str, str]) -> None:
    async def body(env: Env) -> None:
        other = CODE_INTERPRETER if choice is FILE_SEARCH else FILE_SEARCH
        a = await env.assistant("scripted", tools=[WEATHER_TOOL, other])
        t = await env.thread("hello Ada")
        for start in (
            env.client.beta.threads.runs.create(thread_id=t.id, assistant_id=a.id, tool_choice=choice),  # type: ignore[arg-type]
            env.client.beta.threads.create_and_run(assistant_id=a.id, tool_choice=choice),  # type: ignore[arg-type]
            # the run's tools replace the assistant's: these have no such tool either
            env.client.beta.threads.runs.create(thread_id=t.id, assistant_id=(await env.assistant("echo")).id,
                                                tools=[WEATHER_TOOL], tool_choice=choice),  # type: ignore[arg-type, list-item]
        ):
            with pytest.raises(openai.BadRequestError) as info:
                await start
            error = error_json(info.value)
            assert error["param"] == "tool_choice" and error["type"] == "invalid_request_error"
            assert choice["type"] in error["message"]
        assert not (await env.client.beta.threads.runs.list(thread_id=t.id)).data  # nothing was started

    serve(body)


@pytest.mark.parametrize("choice", [{"type": "web_search"}, {"type": "function"}, "always", 5])
def test_a_malformed_tool_choice_is_a_400(choice: object) -> None:
    async def body(env: Env) -> None:
        a = await env.assistant("scripted", tools=[WEATHER_TOOL, FILE_SEARCH])
        t = await env.thread("hi")
        with pytest.raises(openai.BadRequestError) as info:
            await env.client.post(f"/threads/{t.id}/runs", body={"assistant_id": a.id, "tool_choice": choice},
                                  cast_to=object)
        assert error_json(info.value)["param"] == "tool_choice"

    serve(body)
