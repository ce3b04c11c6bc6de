"""The Responses API, driven by the official SDK in-process: create (plain and streamed, in a conversation and
after a previous response, with function calls), retrieve, delete, cancel, input items; every body checked with
the SDK's types and, when the shared folder is beside the repo, the reference schemas."""

from __future__ import annotations

from typing import Any

import openai
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent
from server_helpers import RULES
from test_server_conversations import reference_check, with_client

from runner.server.app import Backend, BackendSettings

WEATHER = {"type": "function", "name": "get_weather", "description": "Current temperature of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SCRIPTED = BackendSettings(rules=RULES)
_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def checked(response: Any) -> Any:
    """The response, its body checked against the reference's `Response` schema."""
    reference_check("Response", response.model_dump(mode="json", exclude_unset=True))
    return response


def test_a_plain_response_is_answered_stored_and_deleted() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        r = checked(await client.responses.create(model="echo", input="hello there", instructions="be brief",
                                                  metadata={"case": "1"}, temperature=0.5, top_p=0.9))
        assert (r.status, r.output_text, r.instructions, r.metadata) == ("completed", "hello there", "be brief",
                                                                         {"case": "1"})
        assert (r.temperature, r.top_p, r.error, r.incomplete_details) == (0.5, 0.9, None, None)
        assert r.usage is not None and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens > 0
        assert r.output[0].type == "message" and r.output[0].role == "assistant"
        assert (await client.responses.retrieve(r.id)).model_dump() == r.model_dump()
        items = await client.responses.input_items.list(r.id)
        reference_check("ResponseItemList", items.model_dump(mode="json", exclude_unset=True))
        assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]
        with pytest.raises(openai.BadRequestError):  # only background responses can be cancelled
            await client.responses.cancel(r.id)
        await client.responses.delete(r.id)
        with pytest.raises(openai.NotFoundError) as info:
            await client.responses.retrieve(r.id)
        assert info.value.body["param"] == "response_id"  # type: ignore[index]

        unstored = await client.responses.create(model="echo", input="not kept", store=False)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(unstored.id)

    with_client(test)


def test_a_conversation_holds_the_context_and_gets_the_new_items() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        conv = await client.conversations.create(metadata={"spec": "weather"},
                                                 items=[{"role": "developer", "content": "Answer in English."}])
        first = checked(await client.responses.create(model="scripted", input="weather in Oslo", tools=[WEATHER],
                                                      conversation=conv.id))
        assert first.conversation is not None and first.conversation.id == conv.id
        call = first.output[0]
        assert (call.type, call.name, call.status) == ("function_call", "get_weather", "completed")  # type: ignore[union-attr]
        assert call.arguments == '{"city": "Oslo"}'  # type: ignore[union-attr]
        second = checked(await client.responses.create(
            model="scripted", tools=[WEATHER], conversation={"id": conv.id},
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "21"}]))  # type: ignore[union-attr]
        assert second.output_text == "It is 21 degrees."
        listed = await client.conversations.items.list(conv.id, order="asc")
        assert [i.type for i in listed.data] == ["message", "message", "function_call", "function_call_output",
                                                 "message"]
        assert listed.data[2].id == call.id and listed.data[4].id == second.output[0].id

    with_client(test, SCRIPTED)


def test_a_previous_response_continues_its_context() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        first = await client.responses.create(model="scripted", input="weather in Paris", tools=[WEATHER])
        call = first.output[0]
        second = await client.responses.create(
            model="scripted", tools=[WEATHER], previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18"}])  # type: ignore[union-attr]
        assert (second.output_text, second.previous_response_id) == ("It is 18 degrees.", first.id)
        items = await client.responses.input_items.list(second.id)
        assert [i.type for i in items.data] == ["function_call_output"]  # its own input, not the context
        third = await client.responses.create(model="echo", input=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and now?"}]}],
            previous_response_id=second.id)
        assert third.output_text == "and now?"

    with_client(test, SCRIPTED)


def test_statuses_come_from_what_the_provider_answers() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        cut = checked(await client.responses.create(model="echo", input="one two three four", max_output_tokens=2))
        assert (cut.status, cut.incomplete_details.reason, cut.output_text) == (  # type: ignore[union-attr]
            "incomplete", "max_output_tokens", "one two")
        failed = checked(await client.responses.create(model="scripted", input="boom"))
        assert failed.status == "failed" and failed.error is not None
        assert (failed.error.code, failed.error.message) == ("server_error", "kaboom")
        forced = await client.responses.create(model="echo", input="hello Ann", tools=[WEATHER],
                                               tool_choice="required")
        assert forced.status == "failed" and "required" in forced.error.message  # type: ignore[union-attr]
        two = await client.responses.create(model="scripted", input="compare Oslo and Rome", tools=[WEATHER],
                                            parallel_tool_calls=False)
        assert [o.type for o in two.output] == ["function_call"]
        named = await client.responses.create(model="scripted", input="weather in Oslo", tools=[WEATHER],
                                              tool_choice={"type": "function", "name": "get_weather"},
                                              text={"format": {"type": "json_schema", "name": "w",
                                                               "schema": {"type": "object"}}})
        assert named.status == "completed" and named.text is not None and named.text.format.type == "json_schema"

    with_client(test, SCRIPTED)


@pytest.mark.parametrize(("params", "status", "param"), [
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, 404, "tools[0].vector_store_ids[0]"),
    ({"tools": [{"type": "computer_use_preview"}]}, 400, "tools[0].type"),
    ({"tools": [WEATHER, {"type": "code_interpreter", "container": {"type": "auto"}}]}, 400, "tools[1].type"),
    ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, 400, "tool_choice.name"),
    ({"tool_choice": "required"}, 400, "tool_choice"),
    ({"model": "chat/llama"}, 400, "model"),
    ({"previous_response_id": "resp_nope"}, 404, "previous_response_id"),
    ({"conversation": "conv_nope"}, 404, "conversation"),
    ({"input": [{"type": "input_image", "image_url": "http://x"}]}, 400, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, 400, "input[0].content[0]"),
    ({"background": True}, 400, "background"),
    ({"prompt": {"id": "pmpt_1"}}, 400, "prompt"),
    ({"temperature": 3}, 400, "temperature"),
    ({"max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"colour": "blue"}, 400, "colour"),
])
def test_bad_requests_name_their_param(params: dict[str, Any], status: int, param: str) -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        body = {"model": "echo", "input": "hi", **params}
        with pytest.raises(openai.APIStatusError) as info:
            await client.responses.create(**{k: v for k, v in body.items() if k != "colour"},
                                          extra_body={"colour": "blue"} if "colour" in body else None)
        assert info.value.status_code == status
        assert info.value.body["param"] == param, info.value.body  # type: ignore[index]
        assert backend.store.list("response").data == []  # nothing was answered, nothing kept

    with_client(test)


def _events(chunks: list[Any]) -> list[dict[str, Any]]:
    out = [_EVENT.validate_python(e.model_dump(mode="json", exclude_unset=True)).model_dump(mode="json",
                                                                                          exclude_unset=True)
           for e in chunks]
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    for event in out:
        reference_check("ResponseStreamEvent", event)
    return out


def test_a_streamed_response_sends_the_official_events_and_accumulates_to_the_response() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        chunks = [e async for e in await client.responses.create(model="echo", input="streamed hi", stream=True)]
        events = _events(chunks)
        assert [e["type"] for e in events] == [
            "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
            "response.output_text.delta", "response.output_text.done", "response.content_part.done",
            "response.output_item.done", "response.completed"]
        assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
        assert events[4]["delta"] == "streamed hi"
        final = events[-1]["response"]
        assert (await client.responses.retrieve(final["id"])).model_dump(mode="json", exclude_unset=True) == final

        async with client.responses.stream(model="scripted", input="weather in Oslo", tools=[WEATHER]) as stream:
            seen = [event.type async for event in stream]
            accumulated = await stream.get_final_response()
        assert seen[2:6] == ["response.output_item.added", "response.function_call_arguments.delta",
                             "response.function_call_arguments.done", "response.output_item.done"]
        stored = await client.responses.retrieve(accumulated.id)
        parsed = accumulated.output[0].model_dump(exclude={"parsed_arguments"})  # the helper's own addition
        assert checked(stored).output[0].model_dump() == parsed
        assert accumulated.output[0].arguments == '{"city": "Oslo"}'  # type: ignore[union-attr]

        replayed = [e async for e in await client.responses.retrieve(stored.id, stream=True)]
        assert [e.type for e in replayed] == ["response.created", "response.in_progress", *seen[2:]]
        later = [e async for e in await client.responses.retrieve(stored.id, stream=True, starting_after=3)]
        assert [e.sequence_number for e in later] == list(range(4, len(replayed)))
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.retrieve(stored.id, stream=True, starting_after=-1)
        assert info.value.body["param"] == "starting_after"  # type: ignore[index]
        assert "an integer, 0 or more" in info.value.body["message"]  # type: ignore[index]

        _events(replayed)
        cut = [e async for e in await client.responses.create(model="echo", input="a b c", max_output_tokens=1,
                                                              stream=True)]
        _events(cut)
        assert cut[-1].type == "response.incomplete"
        failed = [e async for e in await client.responses.create(model="scripted", input="boom", stream=True)]
        assert [e.type for e in failed] == ["response.created", "response.in_progress", "response.failed"]

    with_client(test, SCRIPTED)


def test_a_conversation_deleted_while_the_model_answers_gets_no_items() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        from runner.server import responder

        conv = await client.conversations.create()
        prepared = responder.prepare(backend, {"model": "echo", "input": "hi", "conversation": conv.id})
        await client.conversations.delete(conv.id)
        done = await responder.complete(backend, prepared)
        assert done["status"] == "completed" and backend.store.list("conversation_item").data == []

    with_client(test)


def test_the_model_call_samples_with_the_defaults_the_response_shows() -> None:
    import asyncio

    from fake_upstream import fake_upstream, response_body

    from runner.engine.backend import embedded_client
    from runner.server.app import Backend, BackendSettings
    from runner.server.providers import LiveSettings
    from runner.server.providers.upstream import UpstreamConfig

    async def ask(url: str) -> tuple[float | None, float | None]:
        live = LiveSettings(openai=UpstreamConfig(base_url=url, api_key="unused"))
        client = embedded_client(Backend(BackendSettings(live=live)))
        response = await client.responses.create(model="openai/tiny", input="hi")
        await client.close()
        return response.temperature, response.top_p

    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(text="hello"), {}))
        shown = asyncio.run(ask(fake.url))
        (sent,) = fake.bodies("/responses")
    assert shown == (1.0, 1.0) and (sent["temperature"], sent["top_p"]) == shown
