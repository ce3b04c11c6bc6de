"""Runs on the built-in backend through the official SDK: polling, streaming, tool calls, failures, cancel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from openai.lib.streaming import AsyncAssistantEventHandler
from openai.types.beta.threads.run import Run
from openai.types.beta.threads.runs.run_step import RunStep
from server_helpers import (
    WEATHER_TOOL,
    Env,
    check,
    check_event,
    drain,
    error_json,
    names,
    serve,
    text_of,
)

from runner.server import objects

OFFICIAL_ORDER = [
    "thread.run.created", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress",
    "thread.message.created", "thread.message.in_progress", "thread.message.delta",
    "thread.message.completed", "thread.run.step.completed", "thread.run.completed",
]


async def _requires_action(env: Env, text: str, **kw: object) -> tuple[object, Run]:
    """A thread whose scripted run waits for tool outputs."""
    a = await env.scripted()
    t = await env.thread(text)
    run = check(await env.client.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id, **kw))
    assert run.status == "requires_action"
    return t, run


# -- polling --------------------------------------------------------------------------------------

def test_create_and_poll_on_echo_completes_with_the_last_user_message() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant(instructions="Repeat after me.")
        t = await env.thread("first words", "你好呀, last words!")
        run = check(await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id))
        assert run.id.startswith("run_") and run.object == "thread.run"
        assert run.status == "completed" and run.thread_id == t.id and run.assistant_id == a.id
        assert run.model == "echo" and run.instructions == "Repeat after me."
        assert run.started_at is not None and run.completed_at is not None
        assert run.failed_at is None and run.cancelled_at is None and run.last_error is None
        assert run.required_action is None
        assert run.usage is not None
        assert run.usage.prompt_tokens > 0 and run.usage.completion_tokens > 0
        assert run.usage.total_tokens == run.usage.prompt_tokens + run.usage.completion_tokens
        msgs = await env.messages(t.id)
        assert msgs[0].role == "assistant" and text_of(msgs[0]) == "你好呀, last words!"
        assert msgs[0].run_id == run.id and msgs[0].assistant_id == a.id and msgs[0].status == "completed"
        assert len(msgs) == 3

        listed = await c.beta.threads.runs.list(t.id)
        assert [check(r).id for r in listed.data] == [run.id]

    serve(body)


def test_run_retrieve_has_poll_after_header_and_validates() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("hi")
        created = await c.beta.threads.runs.with_raw_response.create(t.id, assistant_id=a.id)
        assert created.headers["openai-poll-after-ms"] == "25"
        first = Run.model_validate(created.http_response.json())
        assert first.status == "queued" and first.usage is None and first.started_at is None
        await env.settle()
        raw = await c.beta.threads.runs.with_raw_response.retrieve(first.id, thread_id=t.id)
        assert raw.headers["openai-poll-after-ms"] == "25"
        run = Run.model_validate(raw.http_response.json())
        assert run.status == "completed" and raw.parse() == run

        upd = check(await c.beta.threads.runs.update(run.id, thread_id=t.id, metadata={"tag": "x"}))
        assert upd.metadata == {"tag": "x"} and upd.status == "completed"
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).metadata == {"tag": "x"}

    serve(body)


def test_poll_after_ms_setting_is_used() -> None:
    from runner.server import Backend, BackendSettings

    async def body(env: Env) -> None:
        a = await env.assistant()
        t = await env.thread("hi")
        raw = await env.client.beta.threads.runs.with_raw_response.create(t.id, assistant_id=a.id)
        assert raw.headers["openai-poll-after-ms"] == "7"

    serve(body, backend=Backend(BackendSettings(poll_after_ms=7)))


def test_run_overrides_model_instructions_and_additional_messages() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant("echo", instructions="base")
        t = await env.thread("ignored")
        run = check(await c.beta.threads.runs.create_and_poll(
            thread_id=t.id, assistant_id=a.id, additional_instructions="more",
            additional_messages=[{"role": "user", "content": "added late"}], metadata={"m": "1"}))
        assert run.status == "completed" and run.instructions == "base\n\nmore" and run.metadata == {"m": "1"}
        assert (await env.texts(t.id))[-2:] == [("user", "added late"), ("assistant", "added late")]

        s = await env.scripted()
        run = check(await c.beta.threads.runs.create_and_poll(
            thread_id=t.id, assistant_id=s.id, instructions="replaced", model="echo",
            additional_messages=[{"role": "user", "content": "hello Ada"}]))
        assert run.model == "echo" and run.instructions == "replaced"
        assert (await env.texts(t.id))[-1] == ("assistant", "hello Ada")  # echo, not the scripted "Hi Ada!"

    serve(body)


# -- streaming ------------------------------------------------------------------------------------

def test_streaming_run_create_yields_the_official_event_order() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("stream me")
        events = await drain(await c.beta.threads.runs.create(t.id, assistant_id=a.id, stream=True))
        assert names(events) == OFFICIAL_ORDER

        by = {ev.event: ev.data for ev in events}
        # payloads are snapshots taken when each event happened, not the final state
        assert by["thread.run.created"].status == "queued"
        assert by["thread.run.queued"].status == "queued"
        assert by["thread.run.in_progress"].status == "in_progress"
        assert by["thread.run.in_progress"].started_at is not None
        assert by["thread.run.step.created"].status == "in_progress"
        assert by["thread.run.step.in_progress"].status == "in_progress"
        assert by["thread.run.step.created"].completed_at is None
        assert by["thread.message.created"].status == "in_progress"
        assert by["thread.message.created"].content == []
        assert by["thread.message.in_progress"].status == "in_progress"
        assert by["thread.message.completed"].status == "completed"
        assert text_of(by["thread.message.completed"]) == "stream me"
        assert by["thread.run.step.completed"].status == "completed"
        assert by["thread.run.step.completed"].usage is not None
        assert by["thread.run.completed"].status == "completed"
        assert by["thread.run.created"].usage is None and by["thread.run.completed"].usage is not None

        delta = by["thread.message.delta"]
        assert delta.object == "thread.message.delta" and delta.id == by["thread.message.created"].id
        assert delta.delta.content[0].text.value == "stream me"  # type: ignore[union-attr,index]

        run_id = by["thread.run.created"].id
        assert {ev.data.id for ev in events if ev.event.startswith("thread.run.") and "step" not in ev.event} == {
            run_id}
        step = by["thread.run.step.completed"]
        assert step.id.startswith("step_") and step.run_id == run_id and step.type == "message_creation"
        assert step.step_details.message_creation.message_id == delta.id  # type: ignore[union-attr]

        stored = check(await c.beta.threads.runs.retrieve(run_id, thread_id=t.id))
        assert stored == by["thread.run.completed"]
        assert (await env.texts(t.id))[-1] == ("assistant", "stream me")

    serve(body)


def test_stream_with_event_handler_collects_text() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("handled text")

        class Collector(AsyncAssistantEventHandler):
            def __init__(self) -> None:
                super().__init__()
                self.deltas: list[str] = []
                self.done: list[str] = []
                self.events: list[str] = []

            async def on_event(self, event) -> None:  # type: ignore[no-untyped-def]
                check_event(event)
                self.events.append(event.event)

            async def on_text_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
                self.deltas.append(delta.value or "")

            async def on_text_done(self, text) -> None:  # type: ignore[no-untyped-def]
                self.done.append(text.value)

        handler = Collector()
        async with c.beta.threads.runs.stream(thread_id=t.id, assistant_id=a.id, event_handler=handler) as s:
            await s.until_done()
        assert "".join(handler.deltas) == "handled text" and handler.done == ["handled text"]
        assert handler.events == OFFICIAL_ORDER
        final = await handler.get_final_run()
        assert final.status == "completed"
        assert [text_of(m) for m in await handler.get_final_messages()] == ["handled text"]

        # the default handler and its text_deltas iterator
        await c.beta.threads.messages.create(t.id, role="user", content="again")
        async with c.beta.threads.runs.stream(thread_id=t.id, assistant_id=a.id) as stream:
            collected = [piece async for piece in stream.text_deltas]
        assert "".join(collected) == "again"

    serve(body)


def test_create_and_run_poll_and_stream() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        run = check(await c.beta.threads.create_and_run_poll(
            assistant_id=a.id, thread={"messages": [{"role": "user", "content": "made in one go"}],
                                       "metadata": {"t": "1"}}, metadata={"r": "1"}))
        assert run.status == "completed" and run.thread_id.startswith("thread_") and run.metadata == {"r": "1"}
        assert (await c.beta.threads.retrieve(run.thread_id)).metadata == {"t": "1"}
        assert await env.texts(run.thread_id) == [("user", "made in one go"), ("assistant", "made in one go")]

        raw = await c.beta.threads.create_and_run(assistant_id=a.id,
                                                  thread={"messages": [{"role": "user", "content": "x"}]})
        assert check(raw).status == "queued"
        await env.settle()
        assert (await c.beta.threads.runs.retrieve(raw.id, thread_id=raw.thread_id)).status == "completed"

        events = await drain(await c.beta.threads.create_and_run(
            assistant_id=a.id, thread={"messages": [{"role": "user", "content": "streamed"}]}, stream=True))
        # a stream that creates its thread announces it first, as the API's does
        assert names(events) == ["thread.created", *OFFICIAL_ORDER]
        assert events[0].data.id == events[1].data.thread_id
        assert text_of(events[9].data) == "streamed"

        async with c.beta.threads.create_and_run_stream(
                assistant_id=a.id, thread={"messages": [{"role": "user", "content": "helper"}]}) as s:
            text = "".join([d async for d in s.text_deltas])
        assert text == "helper"

        # an empty thread: echo has nothing to repeat but still completes
        run = await c.beta.threads.create_and_run_poll(assistant_id=a.id)
        assert run.status == "completed"
        assert await env.texts(run.thread_id) == [("assistant", "")]

    serve(body)


def test_forced_echo_provider_answers_scripted_model() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant("scripted", tools=[WEATHER_TOOL])
        assert a.model == "scripted"
        t = await env.thread("weather in Paris")
        run = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert run.status == "completed" and run.model == "scripted"
        assert (await env.texts(t.id))[-1] == ("assistant", "weather in Paris")

    serve(body, rules=None, provider="echo")


# -- tool calls -----------------------------------------------------------------------------------

def test_scripted_tool_call_then_submit_outputs_polling() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "what is the weather in Paris?")
        assert run.required_action is not None and run.required_action.type == "submit_tool_outputs"
        calls = run.required_action.submit_tool_outputs.tool_calls
        assert len(calls) == 1
        call = calls[0]
        assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        assert run.usage is not None and run.usage.completion_tokens > 0
        usage_before = run.usage.total_tokens

        # the thread is busy while the run waits
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.messages.create(t.id, role="user", content="hurry up")
        assert run.id in error_json(info.value)["message"]

        done = check(await c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": call.id, "output": "21"}]))
        assert done.status == "completed" and done.required_action is None
        assert done.usage is not None and done.usage.total_tokens > usage_before
        assert (await env.texts(t.id))[-1] == ("assistant", "It is 21 degrees.")

        # steps: the tool call step (output filled in) then the message creation step
        steps = (await c.beta.threads.runs.steps.list(run.id, thread_id=t.id, order="asc")).data
        assert [check(s).type for s in steps] == ["tool_calls", "message_creation"]
        tool_step, msg_step = steps
        assert tool_step.status == "completed" and tool_step.completed_at is not None
        tc = tool_step.step_details.tool_calls[0]  # type: ignore[union-attr]
        assert tc.id == call.id and tc.function.name == "get_weather"  # type: ignore[union-attr]
        assert tc.function.output == "21"  # type: ignore[union-attr]
        assert json.loads(tc.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
        last = (await env.messages(t.id))[0]
        assert msg_step.step_details.message_creation.message_id == last.id  # type: ignore[union-attr]
        for s in steps:
            assert s.id.startswith("step_") and s.run_id == run.id and s.thread_id == t.id
            got = check(await c.beta.threads.runs.steps.retrieve(s.id, thread_id=t.id, run_id=run.id))
            assert got == s
            raw = await c.beta.threads.runs.steps.with_raw_response.retrieve(s.id, thread_id=t.id, run_id=run.id)
            assert RunStep.model_validate(raw.http_response.json()) == s
        assert [s.id for s in (await c.beta.threads.runs.steps.list(run.id, thread_id=t.id)).data] == [
            msg_step.id, tool_step.id]

    serve(body)


def test_tool_step_output_is_empty_before_submit() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Oslo")
        steps = (await c.beta.threads.runs.steps.list(run.id, thread_id=t.id)).data
        assert len(steps) == 1
        step = check(steps[0])
        assert step.type == "tool_calls" and step.status == "in_progress"
        assert step.step_details.tool_calls[0].function.output is None  # type: ignore[union-attr]

    serve(body)


def test_submit_tool_outputs_streaming() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.scripted()
        t = await env.thread("weather in Rome")
        events = await drain(await c.beta.threads.runs.create(t.id, assistant_id=a.id, stream=True))
        assert names(events) == [
            "thread.run.created", "thread.run.queued", "thread.run.in_progress",
            "thread.run.step.created", "thread.run.step.in_progress",
            "thread.run.step.delta", "thread.run.step.delta", "thread.run.requires_action",
        ]
        run = events[-1].data
        assert run.status == "requires_action"
        assert events[3].data.type == "tool_calls"
        assert events[3].data.step_details.tool_calls == []  # the calls come by deltas
        call = run.required_action.submit_tool_outputs.tool_calls[0]
        assert json.loads(call.function.arguments) == {"city": "Rome"}

        events = await drain(await c.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": call.id, "output": "30"}], stream=True))
        got = names(events)
        assert got[0] == "thread.run.step.completed"  # the tool call step, outputs filled in
        assert events[0].data.step_details.tool_calls[0].function.output == "30"
        assert got[1:] == OFFICIAL_ORDER[1:]
        assert events[1].data.status == "queued" and events[2].data.status == "in_progress"
        completed = [ev.data for ev in events if ev.event == "thread.message.completed"]
        assert [text_of(m) for m in completed] == ["It is 30 degrees."]
        assert events[-1].data.status == "completed"

    serve(body)


def test_submit_tool_outputs_stream_helper() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Lima")
        call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        async with c.beta.threads.runs.submit_tool_outputs_stream(
                run_id=run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": call.id, "output": "18"}]) as s:
            text = "".join([d async for d in s.text_deltas])
        assert text == "It is 18 degrees."
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).status == "completed"

    serve(body)


def test_parallel_calls_give_several_tool_calls() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "compare Paris and Berlin")
        calls = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
        assert [json.loads(x.function.arguments) for x in calls] == [
            {"city": "Paris"}, {"city": "Berlin", "unit": "C"}]
        assert len({x.id for x in calls}) == 2 and all(x.function.name == "get_weather" for x in calls)

        # every call needs its output
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": calls[0].id, "output": "20"}])
        assert error_json(info.value)["param"] == "tool_outputs"
        assert calls[1].id in error_json(info.value)["message"]
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).status == "requires_action"

        # outputs may come in any order; the model sees them in submission order
        done = await c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=t.id, tool_outputs=[
                {"tool_call_id": calls[0].id, "output": "20"}, {"tool_call_id": calls[1].id, "output": "15"}])
        assert done.status == "completed"
        assert (await env.texts(t.id))[-1] == ("assistant", "Between 20 and 15 degrees.")
        steps = (await c.beta.threads.runs.steps.list(run.id, thread_id=t.id, order="asc")).data
        outputs = {tc.id: tc.function.output for tc in steps[0].step_details.tool_calls}  # type: ignore
        assert outputs == {calls[0].id: "20", calls[1].id: "15"}

    serve(body)


def test_tool_output_can_trigger_another_call() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "chain start")
        first = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        assert first.function.name == "lookup" and json.loads(first.function.arguments) == {"key": "start"}
        again = await c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": first.id, "output": "next:Cairo"}])
        assert again.status == "requires_action" and again.id == run.id
        second = again.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        assert second.id != first.id and json.loads(second.function.arguments) == {"city": "Cairo"}
        done = await c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": second.id, "output": "35"}])
        assert done.status == "completed"
        assert (await env.texts(t.id))[-1] == ("assistant", "It is 35 degrees.")
        steps = (await c.beta.threads.runs.steps.list(run.id, thread_id=t.id, order="asc")).data
        assert [s.type for s in steps] == ["tool_calls", "tool_calls", "message_creation"]
        assert all(s.status == "completed" for s in steps)

    serve(body)


def test_submit_with_wrong_or_missing_tool_call_id_is_400() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Paris")
        call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        for outputs, param in [
            ([{"tool_call_id": "call_wrong", "output": "1"}], "tool_outputs[0].tool_call_id"),
            ([{"output": "1"}], "tool_outputs[0].tool_call_id"),
            ([], "tool_outputs"),
            ([{"tool_call_id": call.id, "output": "1"}, {"tool_call_id": "call_extra", "output": "2"}],
             "tool_outputs[1].tool_call_id"),
        ]:
            with pytest.raises(openai.BadRequestError) as info:
                await c.beta.threads.runs.submit_tool_outputs(run.id, thread_id=t.id,
                                                              tool_outputs=outputs)  # type: ignore[arg-type]
            assert error_json(info.value)["param"] == param
        with pytest.raises(openai.BadRequestError) as info:
            await c.post(f"/threads/{t.id}/runs/{run.id}/submit_tool_outputs", body={}, cast_to=object)
        assert error_json(info.value)["param"] == "tool_outputs"
        # a failed streaming submission answers 400 too, and leaves the run waiting
        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": "call_wrong", "output": "1"}], stream=True)
        assert env.backend.executor._listeners.get(run.id) is None
        still = check(await c.beta.threads.runs.retrieve(run.id, thread_id=t.id))
        assert still.status == "requires_action" and still.required_action is not None
        # and the right call id still works afterwards
        done = await c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": call.id, "output": "9"}])
        assert done.status == "completed"

    serve(body)


def test_submit_on_a_completed_run_is_400() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}])
        err = error_json(info.value)
        assert "completed" in err["message"]
        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}], stream=True)
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).status == "completed"

    serve(body)


# -- failures -------------------------------------------------------------------------------------

def test_error_rule_fails_the_run() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.scripted()
        t = await env.thread("boom")
        run = check(await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id))
        assert run.status == "failed" and run.failed_at is not None and run.completed_at is None
        assert run.last_error is not None
        assert run.last_error.message == "kaboom" and run.last_error.code == "server_error"
        assert await env.texts(t.id) == [("user", "boom")]  # no assistant message
        # a failed run frees the thread
        await c.beta.threads.messages.create(t.id, role="user", content="hello Bob")
        run = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert run.status == "completed" and (await env.texts(t.id))[-1] == ("assistant", "Hi Bob!")

        events = await drain(await c.beta.threads.runs.create(
            t.id, assistant_id=a.id, stream=True, additional_messages=[{"role": "user", "content": "boom"}]))
        assert names(events) == ["thread.run.created", "thread.run.queued", "thread.run.in_progress",
                                 "thread.run.failed"]
        assert events[-1].data.last_error.message == "kaboom"

    serve(body)


def test_error_rule_on_tool_output_fails_the_run() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Nowhere")
        call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        done = await c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": call.id, "output": "explode"}])
        assert done.status == "failed" and done.last_error is not None
        assert done.last_error.message == "tool output made it explode"

    serve(body)


def test_no_matching_rule_fails_quoting_the_user_text() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.scripted()
        t = await env.thread("something nobody planned for")
        run = check(await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id))
        assert run.status == "failed" and run.last_error is not None
        assert "'something nobody planned for'" in run.last_error.message
        assert "user" in run.last_error.message

        t2, waiting = await _requires_action(env, "weather in Paris")
        call = waiting.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        done = await c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=waiting.id, thread_id=t2.id, tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}])
        assert done.status == "failed" and "'sunny'" in done.last_error.message  # type: ignore[union-attr]
        assert "tool_output" in done.last_error.message  # type: ignore[union-attr]

    serve(body)


# -- one active run per thread, cancel ------------------------------------------------------------

def test_one_active_run_per_thread() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Paris")
        a = await env.assistant()
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.runs.create(t.id, assistant_id=a.id)
        assert run.id in error_json(info.value)["message"]
        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.runs.create(t.id, assistant_id=a.id, stream=True)
        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.messages.create(t.id, role="user", content="more")
        assert len((await c.beta.threads.runs.list(t.id)).data) == 1
        assert len(await env.messages(t.id)) == 1
        # other threads are unaffected
        other = await env.thread("free")
        assert (await c.beta.threads.runs.create_and_poll(thread_id=other.id, assistant_id=a.id)).status == "completed"

    serve(body)


def test_cancel_requires_action_run_frees_the_thread() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Paris")
        cancelled = check(await c.beta.threads.runs.cancel(run.id, thread_id=t.id))
        assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
        assert cancelled.required_action is None
        stored = await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)
        assert stored.status == "cancelled"
        steps = (await c.beta.threads.runs.steps.list(run.id, thread_id=t.id)).data
        assert [(s.type, s.status) for s in steps] == [("tool_calls", "cancelled")]
        assert steps[0].cancelled_at is not None

        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}])
        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.runs.cancel(run.id, thread_id=t.id)

        await c.beta.threads.messages.create(t.id, role="user", content="hello Eve")
        a = await env.scripted()
        again = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert again.status == "completed" and (await env.texts(t.id))[-1] == ("assistant", "Hi Eve!")

    serve(body)


def test_cancel_completed_or_failed_run_is_400() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.scripted()
        t = await env.thread("hello Zed")
        run = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert run.status == "completed"
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.runs.cancel(run.id, thread_id=t.id)
        assert "completed" in error_json(info.value)["message"]
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).status == "completed"

        t2 = await env.thread("boom")
        failed = await c.beta.threads.runs.create_and_poll(thread_id=t2.id, assistant_id=a.id)
        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.runs.cancel(failed.id, thread_id=t2.id)

    serve(body)


class _SlowProvider:
    """A model that answers only once released, so a run can be caught while in progress."""

    name = "slow"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def respond(self, request):  # type: ignore[no-untyped-def]
        from runner.server.providers import ModelReply

        self.started.set()
        await self.release.wait()
        return ModelReply(text="slow answer", prompt_tokens=1, completion_tokens=2)


def _install_slow(env: Env) -> _SlowProvider:
    """A slow model answering "slow" (it routes to the default live provider)."""
    slow = _SlowProvider()
    env.backend.providers.providers["openai"] = slow  # type: ignore[assignment]
    return slow


async def _slow_run_in_progress(env: Env) -> tuple[_SlowProvider, Any, Any]:
    """A thread with one message and a run of the slow model that has started: (model, thread, run)."""
    slow = _install_slow(env)
    a = await env.assistant()
    t = await env.thread("hi")
    run = await env.client.beta.threads.runs.create(t.id, assistant_id=a.id, model="slow")
    await asyncio.wait_for(slow.started.wait(), 5)
    return slow, t, run


def test_cancel_an_in_progress_run() -> None:
    async def body(env: Env) -> None:
        c = env.client
        slow = _install_slow(env)
        a = await env.assistant()
        t = await env.thread("hi")
        # httpx2's ASGITransport hands the response over only once the app has finished it, so the
        # streaming request runs as its own task while the run is cancelled from the side
        streaming = asyncio.create_task(
            c.beta.threads.runs.create(t.id, assistant_id=a.id, model="slow", stream=True))
        await asyncio.wait_for(slow.started.wait(), 5)
        run_id = env.backend.store.private(t.id)["active_run"]
        assert (await c.beta.threads.runs.retrieve(run_id, thread_id=t.id)).status == "in_progress"
        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.messages.create(t.id, role="user", content="not now")
        cancelling = check(await c.beta.threads.runs.cancel(run_id, thread_id=t.id))
        assert cancelling.status == "cancelling"
        events = await drain(await asyncio.wait_for(streaming, 5))
        assert names(events) == ["thread.run.created", "thread.run.queued", "thread.run.in_progress",
                                 "thread.run.cancelled"]
        assert events[-1].data.status == "cancelled" and events[-1].data.cancelled_at is not None
        assert (await c.beta.threads.runs.retrieve(run_id, thread_id=t.id)).status == "cancelled"
        assert await env.texts(t.id) == [("user", "hi")]
        done = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert done.status == "completed"

    serve(body)


def test_slow_run_completes_when_released() -> None:
    async def body(env: Env) -> None:
        c = env.client
        slow, t, run = await _slow_run_in_progress(env)
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).status == "in_progress"
        slow.release.set()
        await env.settle()
        done = await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)
        assert done.status == "completed" and done.usage is not None and done.usage.total_tokens == 3
        assert (await env.texts(t.id))[-1] == ("assistant", "slow answer")

    serve(body)


def test_cancel_a_queued_run_ends_cancelled() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create(t.id, assistant_id=a.id)
        assert run.status == "queued"
        cancelling = await c.beta.threads.runs.cancel(run.id, thread_id=t.id)
        assert cancelling.status in ("cancelling", "cancelled")
        for _ in range(5):
            await asyncio.sleep(0)
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).status == "cancelled"
        again = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert again.status == "completed"

    serve(body)


def test_shutdown_cancels_queued_runs() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create(t.id, assistant_id=a.id)
        await env.backend.executor.shutdown()
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).status == "cancelled"

    serve(body)


def test_deleting_a_thread_during_a_run_leaves_nothing_behind() -> None:
    async def body(env: Env) -> None:
        c = env.client
        slow, t, run = await _slow_run_in_progress(env)
        await c.beta.threads.delete(t.id)
        slow.release.set()
        results = await asyncio.gather(*env.backend.executor._tasks.values(), return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)]
        leftovers = env.backend.store._db.execute(
            "SELECT kind, id FROM objects WHERE parent = ? OR id = ?", (t.id, run.id)).fetchall()
        assert leftovers == []

    serve(body)


# -- expiry ---------------------------------------------------------------------------------------

def test_waiting_run_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Paris")
        real_now = objects.now
        monkeypatch.setattr(objects, "now", lambda: real_now() + objects.RUN_EXPIRY_SECONDS + 1)
        expired = check(await c.beta.threads.runs.retrieve(run.id, thread_id=t.id))
        assert expired.status == "expired" and expired.required_action is None
        with pytest.raises(openai.BadRequestError):
            await c.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=t.id,
                tool_outputs=[{"tool_call_id": run.required_action.submit_tool_outputs.tool_calls[0].id,  # type: ignore
                               "output": "1"}])
        # an expired run no longer holds the thread
        await c.beta.threads.messages.create(t.id, role="user", content="hello Kim")
        a = await env.scripted()
        again = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert again.status == "completed"

    serve(body)


def test_expired_run_expires_its_waiting_step(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Paris")
        real_now = objects.now
        monkeypatch.setattr(objects, "now", lambda: real_now() + objects.RUN_EXPIRY_SECONDS + 1)
        assert (await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)).status == "expired"
        step = (await c.beta.threads.runs.steps.list(run.id, thread_id=t.id)).data[0]
        assert step.status == "expired" and step.expired_at is not None

    serve(body)


def test_expired_run_frees_the_thread_without_being_retrieved(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        c = env.client
        t, run = await _requires_action(env, "weather in Paris")
        real_now = objects.now
        monkeypatch.setattr(objects, "now", lambda: real_now() + objects.RUN_EXPIRY_SECONDS + 1)
        await c.beta.threads.messages.create(t.id, role="user", content="hello Kim")
        assert [r.status for r in (await c.beta.threads.runs.list(t.id)).data] == ["expired"]

    serve(body)


# -- runs listing and steps -----------------------------------------------------------------------

def test_runs_list_and_steps_errors() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("one")
        ids = []
        for i in range(3):
            if i:
                await c.beta.threads.messages.create(t.id, role="user", content=f"n{i}")
            ids.append((await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)).id)
        listed = await c.beta.threads.runs.list(t.id, order="asc")
        assert [check(r).id for r in listed.data] == ids and not listed.has_more
        page = await c.beta.threads.runs.list(t.id, limit=2)
        assert [r.id for r in page.data] == ids[::-1][:2] and page.has_more

        steps0 = (await c.beta.threads.runs.steps.list(ids[0], thread_id=t.id)).data
        steps1 = (await c.beta.threads.runs.steps.list(ids[1], thread_id=t.id)).data
        assert len(steps0) == len(steps1) == 1 and steps0[0].id != steps1[0].id
        # a step is only found under its own run and thread
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.runs.steps.retrieve(steps0[0].id, thread_id=t.id, run_id=ids[1])
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.runs.steps.retrieve("step_nope", thread_id=t.id, run_id=ids[0])
        other = await env.thread("other")
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.runs.retrieve(ids[0], thread_id=other.id)
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.runs.steps.list(ids[0], thread_id=other.id)

    serve(body)


def test_run_requires_assistant_id() -> None:
    async def body(env: Env) -> None:
        t = await env.thread("x")
        with pytest.raises(openai.BadRequestError) as info:
            await env.client.post(f"/threads/{t.id}/runs", body={}, cast_to=object)
        assert error_json(info.value)["param"] == "assistant_id"
        with pytest.raises(openai.BadRequestError) as info:
            await env.client.post("/threads/runs", body={}, cast_to=object)
        assert error_json(info.value)["param"] == "assistant_id"

    serve(body)


def test_many_conversations_stay_fast() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(30):
            t = await env.thread(f"msg {i}")
            events = await drain(await c.beta.threads.runs.create(t.id, assistant_id=a.id, stream=True))
            assert names(events)[-1] == "thread.run.completed"
            assert text_of(events[8].data) == f"msg {i}"
        assert loop.time() - start < 20

    serve(body)
