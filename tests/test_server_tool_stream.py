"""Function-calling runs streamed to the official SDK's event handler: the tool-call hooks fire with each call's
name and arguments, in the hosted API's order, and every event is one of the SDK's AssistantStreamEvent types."""

from __future__ import annotations

import json
from typing import Any

from openai.lib.streaming import AsyncAssistantEventHandler
from server_helpers import Env, check, check_event, serve


class Hooks(AsyncAssistantEventHandler):
    """Records the events (validated) and the hooks the SDK's stream helper fires, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.hooks: list[tuple[Any, ...]] = []
        self.steps_done: list[Any] = []

    async def on_event(self, event: Any) -> None:
        check_event(event)
        self.events.append(event.event)

    async def on_run_step_created(self, run_step: Any) -> None:
        self.hooks.append(("step_created", run_step.type))

    async def on_run_step_done(self, run_step: Any) -> None:
        self.hooks.append(("step_done", run_step.type, run_step.status))
        self.steps_done.append(run_step)

    async def on_tool_call_created(self, tool_call: Any) -> None:
        self.hooks.append(("tool_call_created", tool_call.id, tool_call.function.name, tool_call.function.arguments))

    async def on_tool_call_delta(self, delta: Any, snapshot: Any) -> None:
        self.hooks.append(("tool_call_delta", delta.index, delta.function.arguments, snapshot.function.arguments))

    async def on_tool_call_done(self, tool_call: Any) -> None:
        self.hooks.append(("tool_call_done", tool_call.id, tool_call.function.name, tool_call.function.arguments))

    async def on_text_created(self, text: Any) -> None:
        self.hooks.append(("text_created",))

    async def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.hooks.append(("text_delta", delta.value))

    async def on_text_done(self, text: Any) -> None:
        self.hooks.append(("text_done", text.value))


WAITING_EVENTS = [
    "thread.run.created", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress",
]


def test_a_function_call_fires_the_tool_call_hooks_then_the_text_hooks() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.scripted()
        t = await env.thread("weather in Rome")
        handler = Hooks()
        async with c.beta.threads.runs.stream(thread_id=t.id, assistant_id=a.id, event_handler=handler) as stream:
            await stream.until_done()
        run = await handler.get_final_run()
        assert run.status == "requires_action"
        (call,) = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
        arguments = '{"city": "Rome"}'
        assert handler.events == [*WAITING_EVENTS, "thread.run.step.delta", "thread.run.step.delta",
                                  "thread.run.requires_action"]
        assert handler.hooks == [
            ("step_created", "tool_calls"),
            ("tool_call_created", call.id, "get_weather", ""),
            ("tool_call_delta", 0, arguments, arguments),
            ("tool_call_done", call.id, "get_weather", arguments),
        ]
        # the handler's snapshot of the step is the stored step: deltas added up once, nothing doubled
        (snapshot,) = await handler.get_final_run_steps()
        stored = check(await c.beta.threads.runs.steps.retrieve(snapshot.id, thread_id=t.id, run_id=run.id))
        accumulated = snapshot.step_details.to_dict()
        for tool_call in accumulated["tool_calls"]:
            assert tool_call.pop("index") == 0  # the deltas' index stays on the snapshot, as with the hosted API
        assert accumulated == stored.step_details.to_dict()
        assert json.loads(call.function.arguments) == {"city": "Rome"}

        after = Hooks()
        async with c.beta.threads.runs.submit_tool_outputs_stream(
                run_id=run.id, thread_id=t.id, tool_outputs=[{"tool_call_id": call.id, "output": "30"}],
                event_handler=after) as stream:
            await stream.until_done()
        assert after.events[0] == "thread.run.step.completed" and after.events[-1] == "thread.run.completed"
        assert after.hooks == [
            ("step_done", "tool_calls", "completed"),  # the tool step ends once its outputs are in
            ("step_created", "message_creation"),
            ("text_created",), ("text_delta", "It is 30 degrees."), ("text_done", "It is 30 degrees."),
            ("step_done", "message_creation", "completed"),
        ]
        tool_step = after.steps_done[0]
        assert tool_step.id == snapshot.id and tool_step.step_details.tool_calls[0].function.output == "30"

    serve(body)


def test_parallel_calls_are_opened_and_closed_one_after_the_other() -> None:
    async def body(env: Env) -> None:
        a = await env.scripted()
        t = await env.thread("compare Oslo and Rome")
        handler = Hooks()
        async with env.client.beta.threads.runs.stream(thread_id=t.id, assistant_id=a.id,
                                                       event_handler=handler) as stream:
            await stream.until_done()
        run = await handler.get_final_run()
        first, second = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
        oslo, rome = '{"city": "Oslo"}', '{"city": "Rome", "unit": "C"}'
        assert (first.function.arguments, second.function.arguments) == (oslo, rome)
        assert handler.events == [*WAITING_EVENTS, *["thread.run.step.delta"] * 4, "thread.run.requires_action"]
        assert handler.hooks == [
            ("step_created", "tool_calls"),
            ("tool_call_created", first.id, "get_weather", ""),
            ("tool_call_delta", 0, oslo, oslo),
            ("tool_call_done", first.id, "get_weather", oslo),  # a new index closes the previous call
            ("tool_call_created", second.id, "get_weather", ""),
            ("tool_call_delta", 1, rome, rome),
            ("tool_call_done", second.id, "get_weather", rome),  # requires_action closes the last one
        ]

    serve(body)


def test_create_and_run_stream_fires_the_tool_call_hooks_too() -> None:
    async def body(env: Env) -> None:
        a = await env.scripted()
        handler = Hooks()
        async with env.client.beta.threads.create_and_run_stream(
                assistant_id=a.id, thread={"messages": [{"role": "user", "content": "weather in Lima"}]},
                event_handler=handler) as stream:
            await stream.until_done()
        assert handler.events[0] == "thread.created"
        assert [h[0] for h in handler.hooks] == ["step_created", "tool_call_created", "tool_call_delta",
                                                 "tool_call_done"]
        assert handler.hooks[-1][2:] == ("get_weather", '{"city": "Lima"}')

    serve(body)


def test_the_step_events_carry_the_calls_by_deltas_in_the_api_shape() -> None:
    """step.created / in_progress announce no calls yet (a snapshot the deltas add to); each call's first delta
    has its index, id, type, name, empty arguments and null output, the next one its arguments."""

    async def body(env: Env) -> None:
        a = await env.scripted()
        t = await env.thread("weather in Rome")
        events = [check_event(e) async for e in await env.client.beta.threads.runs.create(
            thread_id=t.id, assistant_id=a.id, stream=True)]
        created, in_progress, opening, arguments = events[3:7]
        assert created.data.step_details.tool_calls == [] and in_progress.data.step_details.tool_calls == []
        assert created.data.status == "in_progress" and created.data.type == "tool_calls"
        call = events[-1].data.required_action.submit_tool_outputs.tool_calls[0]
        assert opening.data.to_dict() == {"id": created.data.id, "object": "thread.run.step.delta", "delta": {
            "step_details": {"type": "tool_calls", "tool_calls": [{
                "index": 0, "id": call.id, "type": "function",
                "function": {"name": "get_weather", "arguments": "", "output": None}}]}}}
        assert arguments.data.delta.step_details.tool_calls[0].to_dict() == {
            "index": 0, "type": "function", "function": {"arguments": '{"city": "Rome"}'}}
        # what polling sees meanwhile is the whole step, calls included
        (stored,) = (await env.client.beta.threads.runs.steps.list(events[-1].data.id, thread_id=t.id)).data
        assert stored.step_details.tool_calls[0].function.arguments == '{"city": "Rome"}'  # type: ignore[union-attr]

    serve(body)
