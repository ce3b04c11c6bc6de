"""The built-in tools in the Responses API: `file_search` over the request's vector stores and `code_interpreter`
in a container, forced by `tool_choice` or called by the model; their `file_search_call` and
`code_interpreter_call` items (results and outputs where `include` asks), the reply's citations, the official
stream events, a container reused through a conversation, and the bad requests naming their param."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent
from test_server_conversations import with_client
from test_server_file_search_runs import SEARCHING_RULES, _store
from test_server_responses import checked

from runner.server.app import Backend, BackendSettings
from runner.server.tools.code_interpreter import CodeLimits, SandboxUnavailable, prepare

_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def _sandbox_or_skip() -> None:
    try:
        prepare()
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")


def test_a_forced_file_search_searches_the_user_text_and_shows_results_only_when_included() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        tool = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 1}
        plain = checked(await client.responses.create(model="echo", input="What pulls the tides?", tools=[tool],
                                                      tool_choice={"type": "file_search"}))
        assert plain.status == "completed" and [o.type for o in plain.output] == ["file_search_call", "message"]
        call = plain.output[0]
        assert call.queries == ["What pulls the tides?"] and call.results is None  # type: ignore[union-attr]
        assert plain.tools[0].max_num_results == 1 and plain.tool_choice.type == "file_search"  # type: ignore[union-attr]
        full = checked(await client.responses.retrieve(plain.id, include=["file_search_call.results"]))
        (result,) = full.output[0].results  # type: ignore[union-attr]
        assert result.filename == "tides.md" and "moon" in result.text and 0 < result.score <= 1
        included = await client.responses.create(model="echo", input="sourdough", tools=[tool],
                                                 tool_choice={"type": "file_search"},
                                                 include=["file_search_call.results"])
        assert included.output[0].results[0].filename == "bread.txt"  # type: ignore[union-attr]

    with_client(test)


def test_a_model_calling_file_search_gets_the_results_and_its_markers_become_citations() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        r = checked(await client.responses.create(
            model="scripted", input="look up sourdough", include=["file_search_call.results"],
            tools=[{"type": "file_search", "vector_store_ids": [store_id]}]))
        assert r.status == "completed" and [o.type for o in r.output] == ["file_search_call", "message"]
        assert r.output[0].queries == ["sourdough"]  # type: ignore[union-attr]
        assert r.output_text == "Found: Sourdough 【0:0†bread.txt】 and 【7:0†source】."
        bread = next(f.id for f in (await client.files.list()).data if f.filename == "bread.txt")
        (citation,) = r.output[1].content[0].annotations  # type: ignore[union-attr]  # 【7:0】 names no result
        assert (citation.type, citation.file_id, citation.filename) == ("file_citation", bread, "bread.txt")
        assert r.output_text[citation.index:].startswith("【0:0†bread.txt】")  # type: ignore[union-attr]
        assert r.usage is not None and r.usage.output_tokens > len("Found")  # both model calls counted

    with_client(test, BackendSettings(rules=SEARCHING_RULES))


def test_file_search_streams_its_phases_and_the_citation_in_the_official_events() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        tools: Any = [{"type": "file_search", "vector_store_ids": [store_id]}]
        raw = [e async for e in await client.responses.create(model="scripted", input="look up sourdough",
                                                              tools=tools, stream=True)]
        kinds = [_EVENT.validate_python(e.model_dump(mode="json")).type for e in raw]
        assert [e.sequence_number for e in raw] == list(range(len(raw)))
        async with client.responses.stream(model="scripted", input="look up sourdough", tools=tools) as stream:
            final = await stream.get_final_response()  # the SDK's accumulator takes every event
        assert kinds[kinds.index("response.output_item.added"):][:5] == [
            "response.output_item.added", "response.file_search_call.in_progress",
            "response.file_search_call.searching", "response.file_search_call.completed",
            "response.output_item.done"]
        assert "response.output_text.annotation.added" in kinds
        assert final.output_text.startswith("Found: Sourdough") and final.output[1].content[0].annotations  # type: ignore[union-attr]

    with_client(test, BackendSettings(rules=SEARCHING_RULES))


def test_filters_narrow_the_search_and_a_conversation_does_not_feed_old_results_back() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        files = {f.filename: f.id for f in (await client.files.list()).data}
        await client.vector_stores.files.update(files["bread.txt"], vector_store_id=store_id,
                                                attributes={"topic": "food"})
        conv = await client.conversations.create()
        tool = {"type": "file_search", "vector_store_ids": [store_id],
                "filters": {"type": "eq", "key": "topic", "value": "food"}}
        r = await client.responses.create(model="echo", input="tides moon bread", conversation=conv.id,
                                          tools=[tool], tool_choice={"type": "file_search"},
                                          include=["file_search_call.results"])
        assert [x.filename for x in r.output[0].results] == ["bread.txt"]  # type: ignore[union-attr]
        kept = (await client.conversations.items.list(conv.id, order="asc")).data
        assert [i.type for i in kept] == ["message", "file_search_call", "message"]
        assert kept[1].results is None  # type: ignore[union-attr]  # shown as the API shows it: results on request
        again = await client.responses.create(model="echo", input="second", conversation=conv.id)
        assert again.output_text == "second"  # echo answers the last user text: the old search is not re-read

    with_client(test)


@pytest.mark.parametrize(("tool", "choice", "status", "param"), [
    ({"type": "file_search", "vector_store_ids": ["vs_nope"]}, None, 404, "tools[0].vector_store_ids[0]"),
    ({"type": "file_search"}, None, 400, "tools[0].vector_store_ids"),
    ({"type": "file_search", "vector_store_ids": [], "max_num_results": 51}, None, 400, "tools[0].max_num_results"),
    ({"type": "file_search", "vector_store_ids": [], "filters": {"type": "eq", "key": "k"}}, None, 400,
     "tools[0].filters.value"),
    ({"type": "code_interpreter", "container": {"type": "auto"}}, None, 400, "tools[0].type"),  # no sandbox set up
    ({"type": "web_search"}, None, 400, "tools[0].type"),
    ({"type": "file_search", "vector_store_ids": []}, {"type": "code_interpreter"}, 400, "tool_choice.type"),
    ({"type": "file_search", "vector_store_ids": []}, {"type": "web_search_preview"}, 400, "tool_choice"),
])
def test_bad_built_in_tools_name_their_param(tool: dict[str, Any], choice: Any, status: int, param: str) -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        with pytest.raises(openai.APIStatusError) as info:
            await client.responses.create(model="echo", input="hi", tools=[tool],  # type: ignore[list-item]
                                          **({"tool_choice": choice} if choice else {}))
        assert (info.value.status_code, info.value.body["param"]) == (status, param), info.value.body  # type: ignore[index]
        assert backend.store.list("response").data == []

    with_client(test)


def test_an_unknown_include_value_is_refused() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.create(model="echo", input="hi", include=["nope"])  # type: ignore[list-item]
        assert info.value.body["param"] == "include[0]"  # type: ignore[index]

    with_client(test)


CODE_RULES = [
    {"user": r"^chart", "call": {"name": "code_interpreter", "arguments": {"code": (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\nplt.show()\nopen('/mnt/data/out.txt', 'w').write('done')\nprint('drawn')")}}},
    {"tool_output": r"drawn", "reply": "Here it is: sandbox:/mnt/data/out.txt"},
]


def test_code_runs_in_a_container_that_the_conversation_keeps() -> None:
    _sandbox_or_skip()

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        data = await client.files.create(file=("n.txt", b"40", "text/plain"), purpose="assistants")
        tool = {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [data.id]}}
        conv = await client.conversations.create()
        first = checked(await client.responses.create(
            model="echo", input="total = int(open('/mnt/data/n.txt').read())", conversation=conv.id,
            tools=[tool], tool_choice={"type": "code_interpreter"}, include=["code_interpreter_call.outputs"]))
        assert first.status == "completed", first.error
        call = first.output[0]
        assert call.type == "code_interpreter_call" and call.container_id.startswith("cntr_")
        second = await client.responses.create(model="echo", input="print(total + 2)", conversation=conv.id,
                                               tools=[tool], tool_choice={"type": "code_interpreter"},
                                               include=["code_interpreter_call.outputs"])
        again = second.output[0]
        assert again.container_id == call.container_id  # type: ignore[union-attr]
        assert [(o.type, o.logs) for o in again.outputs] == [("logs", "42")]  # type: ignore[union-attr]
        by_id = await client.responses.create(
            model="echo", input="print(total)", tool_choice={"type": "code_interpreter"},
            tools=[{"type": "code_interpreter", "container": call.container_id}])  # type: ignore[union-attr]
        assert by_id.output[0].outputs is None  # type: ignore[union-attr]  # not included
        with pytest.raises(openai.NotFoundError) as info:
            await client.responses.create(model="echo", input="x", tools=[
                {"type": "code_interpreter", "container": "cntr_nope"}])
        assert info.value.body["param"] == "tools[0].container"  # type: ignore[index]

    with_client(test, BackendSettings(code_interpreter=CodeLimits(wall_seconds=30)))


def test_a_model_drawing_a_chart_gets_an_image_output_and_a_container_file_citation() -> None:
    _sandbox_or_skip()
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        r = checked(await client.responses.create(
            model="scripted", input="chart it", include=["code_interpreter_call.outputs"],
            tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]))
        assert r.status == "completed", r.error
        call = r.output[0]
        kinds = [o.type for o in call.outputs]  # type: ignore[union-attr]
        assert kinds == ["logs", "image"]
        url = call.outputs[1].url  # type: ignore[union-attr]
        assert base64.b64decode(url.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
        assert r.output_text == "Here it is: sandbox:/mnt/data/out.txt"
        (cite,) = r.output[1].content[0].annotations  # type: ignore[union-attr]
        assert (cite.type, cite.filename, cite.container_id) == (
            "container_file_citation", "out.txt", call.container_id)  # type: ignore[union-attr]
        assert r.output_text[cite.start_index:cite.end_index] == "sandbox:/mnt/data/out.txt"  # type: ignore[union-attr]
        assert (await client.files.content(cite.file_id)).content == b"done"  # type: ignore[union-attr]

    with_client(test, BackendSettings(code_interpreter=CodeLimits(wall_seconds=30), rules=CODE_RULES))


def test_handed_back_built_in_calls_get_ids_of_their_own_and_bad_ones_name_their_field() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        call = {"type": "file_search_call", "id": "fs_1", "queries": ["q"], "status": "completed",
                "bogus": {"deep": 1}}
        conv = await client.conversations.create(items=[call, call])  # type: ignore[list-item]
        kept = (await client.conversations.items.list(conv.id, order="asc")).data
        assert len({item.id for item in kept}) == 2 and "fs_1" not in {item.id for item in kept}
        assert "bogus" not in kept[0].model_dump()  # only the API's fields are kept
        again = await client.responses.create(model="echo", conversation=conv.id, input=[  # type: ignore[list-item]
            call, {"role": "user", "content": "hi"}])
        assert again.status == "completed"
        for bad, param in ((dict(call, results="x"), "input[0].results"), (dict(call, status="odd"), "input[0].status"),
                           ({"type": "code_interpreter_call", "id": "ci_1", "code": "x", "container_id": 5,
                             "outputs": None, "status": "completed"}, "input[0].container_id")):
            with pytest.raises(openai.BadRequestError) as info:
                await client.responses.create(model="echo", input=[bad])  # type: ignore[list-item]
            assert info.value.body["param"] == param, info.value.body  # type: ignore[index]

    with_client(test)


def test_a_forced_built_in_tool_binds_no_create_answering_function_outputs() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        r = await client.responses.create(model="echo", tool_choice={"type": "file_search"}, input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"}],
            tools=[{"type": "function", "name": "w", "parameters": {"type": "object"}},  # type: ignore[list-item]
                   {"type": "file_search", "vector_store_ids": [store_id]}])
        assert [o.type for o in r.output] == ["message"]

    with_client(test)


def test_an_auto_container_reuses_the_code_call_handed_back_in_the_input() -> None:
    _sandbox_or_skip()

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        tool: Any = [{"type": "code_interpreter", "container": {"type": "auto"}}]
        first = await client.responses.create(model="echo", input="x = 42", tools=tool, store=False,
                                              tool_choice={"type": "code_interpreter"})
        call = first.output[0].model_dump(mode="json", exclude_none=True)
        second = await client.responses.create(
            model="echo", tools=tool, tool_choice={"type": "code_interpreter"}, include=["code_interpreter_call.outputs"],
            input=[call, {"role": "user", "content": "print(x * 2)"}], store=False)
        assert second.output[0].container_id == call["container_id"]  # type: ignore[union-attr]
        assert [o.logs for o in second.output[0].outputs] == ["84"]  # type: ignore[union-attr]

    with_client(test, BackendSettings(code_interpreter=CodeLimits(wall_seconds=30)))
