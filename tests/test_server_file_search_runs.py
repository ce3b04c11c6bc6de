"""The file_search tool in runs: a forced `tool_choice: file_search` searches the assistant's and the thread's
vector stores with the last user message, and the run shows a completed tool_calls step with the results,
polled or streamed, before the model's reply."""

from __future__ import annotations

import json

import openai
from openai.types.beta.assistant_stream_event import AssistantStreamEvent
from pydantic import TypeAdapter
from test_server_files import _with_client

from runner.server.app import Backend
from runner.server.routes.runs import SEARCH_CONTENT

DOCS = {"tides.md": "Tides are caused by the gravitational pull of the moon on the oceans.",
        "bread.txt": "Sourdough bread needs flour, water, salt and a starter."}


async def _world(client: openai.AsyncOpenAI, backend: Backend) -> tuple[str, str]:
    """An assistant with file_search over a store of DOCS; its id and the store's."""
    ids = [(await client.files.create(file=(name, text.encode(), "text/plain"), purpose="assistants")).id
           for name, text in DOCS.items()]
    store = await client.vector_stores.create(file_ids=ids)
    await backend.ingestor.settled()
    assistant = await client.beta.assistants.create(
        model="echo", tools=[{"type": "file_search", "file_search": {"max_num_results": 1}}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    return assistant.id, store.id


def test_a_forced_file_search_makes_a_step_with_the_results_before_the_reply() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant_id, _ = await _world(client, backend)
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant_id, tool_choice={"type": "file_search"},
            thread={"messages": [{"role": "user", "content": "What pulls the tides?"}]}, poll_interval_ms=10)
        assert run.status == "completed" and run.tool_choice.type == "file_search"  # type: ignore[union-attr]
        steps = (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")).data
        assert [s.type for s in steps] == ["tool_calls", "message_creation"]
        call = steps[0].step_details.tool_calls[0]  # type: ignore[union-attr]
        assert call.type == "file_search" and steps[0].status == "completed"
        results = call.file_search.results
        assert [r.file_name for r in results] == ["tides.md"] and 0 < results[0].score <= 1  # max_num_results: 1
        messages = (await client.beta.threads.messages.list(run.thread_id)).data
        assert messages[0].role == "assistant"

    _with_client(test)


def test_the_search_step_streams_in_the_official_events() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant_id, _ = await _world(client, backend)
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "sourdough starter"}])
        adapter = TypeAdapter(AssistantStreamEvent)
        kinds = []
        async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant_id,
                                                   tool_choice={"type": "file_search"}) as stream:
            async for event in stream:
                adapter.validate_python(event.model_dump(mode="json"))
                kinds.append(event.event)
            final = await stream.get_final_run_steps()
        step_events = [k for k in kinds if k.startswith("thread.run.step.")]
        assert step_events[:4] == ["thread.run.step.created", "thread.run.step.in_progress",
                                   "thread.run.step.delta", "thread.run.step.completed"]
        call = final[0].step_details.tool_calls[0]  # type: ignore[union-attr]
        assert call.file_search.results[0].file_name == "bread.txt"

    _with_client(test)


def test_a_thread_without_stores_searches_nothing_and_still_answers() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "file_search"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, tool_choice={"type": "file_search"},
            thread={"messages": [{"role": "user", "content": "anything"}]}, poll_interval_ms=10)
        assert run.status == "completed"
        steps = (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")).data
        assert steps[0].step_details.tool_calls[0].file_search.results == []  # type: ignore[union-attr]
        assert json.loads(steps[0].model_dump_json())["status"] == "completed"

    _with_client(test)


def test_the_scripted_model_answers_from_what_the_search_found() -> None:
    from runner.server.app import BackendSettings

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        ids = [(await client.files.create(file=(name, text.encode(), "text/plain"), purpose="assistants")).id
               for name, text in DOCS.items()]
        store = await client.vector_stores.create(file_ids=ids)
        await backend.ingestor.settled()
        assistant = await client.beta.assistants.create(model="scripted", tools=[{"type": "file_search"}])
        thread = await client.beta.threads.create(
            messages=[{"role": "user", "content": "what do I need for sourdough?"}],
            tool_resources={"file_search": {"vector_store_ids": [store.id]}})  # the thread's store is searched
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                             tool_choice={"type": "file_search"}, poll_interval_ms=10)
        assert run.status == "completed", run.last_error
        reply = (await client.beta.threads.messages.list(thread.id)).data[0]
        assert reply.content[0].text.value == "It says so in bread.txt."  # type: ignore[union-attr]

    _with_client(test, BackendSettings(rules=[{"tool_output": r"【0:0†([^】]+)】", "reply": r"It says so in \1."}]))


def test_include_asks_for_the_text_of_each_result() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant_id, _ = await _world(client, backend)
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant_id, tool_choice={"type": "file_search"},
            thread={"messages": [{"role": "user", "content": "What pulls the tides?"}]}, poll_interval_ms=10)
        plain = (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")).data[0]
        assert plain.step_details.tool_calls[0].file_search.results[0].content is None  # type: ignore[union-attr]
        full = (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc",
                                                           include=[SEARCH_CONTENT])).data[0]
        content = full.step_details.tool_calls[0].file_search.results[0].content  # type: ignore[union-attr]
        assert content is not None and "moon" in (content[0].text or "")
        one = await client.beta.threads.runs.steps.retrieve(full.id, thread_id=run.thread_id, run_id=run.id,
                                                            include=[SEARCH_CONTENT])
        assert one.step_details.tool_calls[0].file_search.results[0].content  # type: ignore[union-attr]
        bad = await client._client.get(f"/threads/{run.thread_id}/runs/{run.id}/steps",
                                       params={"include[]": "everything"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "include"

    _with_client(test)


def test_a_file_attached_to_a_message_is_searched_in_the_threads_own_store() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        notes = await client.files.create(file=("notes.txt", b"The meeting moved to Thursday at noon.", "text/plain"),
                                          purpose="assistants")
        data = await client.files.create(file=("data.csv", b"a,b\n1,2\n", "text/csv"), purpose="assistants")
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "file_search"}])
        thread = await client.beta.threads.create()
        await client.beta.threads.messages.create(thread.id, role="user", content="When is the meeting?", attachments=[
            {"file_id": notes.id, "tools": [{"type": "file_search"}]},
            {"file_id": data.id, "tools": [{"type": "code_interpreter"}]}])
        resources = (await client.beta.threads.retrieve(thread.id)).tool_resources
        assert resources is not None and resources.code_interpreter is not None
        assert resources.code_interpreter.file_ids == [data.id]
        store_ids = resources.file_search.vector_store_ids  # type: ignore[union-attr]
        assert store_ids is not None and len(store_ids) == 1
        # the run searches at once: it waits for the attachment to be indexed, as the API does
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                             tool_choice={"type": "file_search"}, poll_interval_ms=10)
        steps = (await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")).data
        results = steps[0].step_details.tool_calls[0].file_search.results  # type: ignore[union-attr]
        assert [r.file_name for r in results] == ["notes.txt"]
        # a second attachment goes into the same store
        more = await client.files.create(file=("more.txt", b"Bring the slides.", "text/plain"), purpose="assistants")
        await client.beta.threads.messages.create(thread.id, role="user", content="and?",
                                                  attachments=[{"file_id": more.id, "tools": [{"type": "file_search"}]}])
        await backend.ingestor.settled()
        assert (await client.vector_stores.retrieve(store_ids[0])).file_counts.completed == 2

    _with_client(test)


SEARCHING_RULES = [
    {"user": r"^look up (.+)", "call": {"name": "file_search", "arguments": {"query": r"\1"}}},
    {"tool_output": r"(【0:0†[^】]+】)[^\n]*\n(\w+)", "reply": r"Found: \2 \1 and 【7:0†source】."},
]


async def _store(client: openai.AsyncOpenAI, backend: Backend) -> str:
    ids = [(await client.files.create(file=(name, text.encode(), "text/plain"), purpose="assistants")).id
           for name, text in DOCS.items()]
    store = await client.vector_stores.create(file_ids=ids)
    await backend.ingestor.settled()
    return store.id


def test_a_model_calling_file_search_is_answered_by_the_backend_and_its_citations_annotated() -> None:
    from runner.server.app import BackendSettings

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        assistant = await client.beta.assistants.create(
            model="scripted", tools=[{"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}})
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "look up sourdough"}]},
            poll_interval_ms=10)
        assert run.status == "completed", run.last_error  # no requires_action: the backend answered the call
        steps = (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")).data
        assert [s.type for s in steps] == ["tool_calls", "message_creation"]
        call = steps[0].step_details.tool_calls[0]  # type: ignore[union-attr]
        assert call.type == "file_search" and call.file_search.results[0].file_name == "bread.txt"
        assert call.model_dump()["file_search"]["queries"] == ["sourdough"]
        assert steps[0].usage is not None and steps[0].usage.completion_tokens > 0  # the model call that searched
        assert run.usage is not None and run.usage.completion_tokens > steps[1].usage.completion_tokens  # type: ignore[union-attr]
        reply = (await client.beta.threads.messages.list(run.thread_id)).data[0]
        text = reply.content[0].text  # type: ignore[union-attr]
        assert text.value == "Found: Sourdough 【0:0†bread.txt】 and 【7:0†source】."
        bread = next(f.id for f in (await client.files.list()).data if f.filename == "bread.txt")
        (citation,) = text.annotations  # the marker naming no result of the run's searches stays text
        assert citation.type == "file_citation" and citation.file_citation.file_id == bread  # type: ignore[union-attr]
        assert text.value[citation.start_index:citation.end_index] == citation.text == "【0:0†bread.txt】"

    _with_client(test, BackendSettings(rules=SEARCHING_RULES))


def test_the_streamed_reply_carries_its_citations_to_the_sdks_snapshot() -> None:
    from runner.server.app import BackendSettings

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        assistant = await client.beta.assistants.create(model="scripted", tools=[{"type": "file_search"}])
        thread = await client.beta.threads.create(
            messages=[{"role": "user", "content": "look up tides moon"}],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}})
        adapter = TypeAdapter(AssistantStreamEvent)
        async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            async for event in stream:
                adapter.validate_python(event.model_dump(mode="json"))
            (message,) = await stream.get_final_messages()
            (step, _) = await stream.get_final_run_steps()
        assert step.step_details.tool_calls[0].file_search.results[0].file_name == "tides.md"  # type: ignore[union-attr]
        annotations = message.content[0].text.annotations  # type: ignore[union-attr]
        assert [a.text for a in annotations] == ["【0:0†tides.md】"]

    _with_client(test, BackendSettings(rules=SEARCHING_RULES))


def test_a_model_that_only_ever_searches_fails_the_run_after_a_bounded_number_of_rounds() -> None:
    from runner.server.app import BackendSettings
    from runner.server.executor import MAX_BUILTIN_ROUNDS

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="scripted", tools=[{"type": "file_search"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "look up anything"}]},
            poll_interval_ms=10)
        assert run.status == "failed" and run.last_error is not None
        assert f"file_search {MAX_BUILTIN_ROUNDS} times in a row" in run.last_error.message
        steps = (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, limit=100)).data
        assert len(steps) == MAX_BUILTIN_ROUNDS and all(s.status == "completed" for s in steps)

    rules = [{"user": "look up", "call": {"name": "file_search", "arguments": {"query": "more"}}},
             {"tool_output": "", "call": {"name": "file_search", "arguments": {"query": "again"}}}]
    _with_client(test, BackendSettings(rules=rules))


WEATHER_FUNCTION = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def test_a_search_beside_a_function_call_runs_first_and_the_function_waits_for_the_client() -> None:
    from runner.server.app import BackendSettings

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="scripted",
                                                        tools=[{"type": "file_search"}, WEATHER_FUNCTION])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "both please"}]},
            poll_interval_ms=10)
        assert run.status == "requires_action"
        (pending,) = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
        assert pending.function.name == "get_weather"
        run = await client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": pending.id, "output": "sunny"}],
            poll_interval_ms=10)
        assert run.status == "completed", run.last_error
        steps = (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")).data
        kinds = [[c.type for c in s.step_details.tool_calls] if s.type == "tool_calls" else s.type  # type: ignore[union-attr]
                 for s in steps]
        assert kinds == [["file_search"], ["function"], "message_creation"]

    rules = [{"user": "both", "calls": [{"name": "file_search", "arguments": {"query": "x"}},
                                        {"name": "get_weather", "arguments": {"city": "Oslo"}}]},
             {"tool_output": "sunny", "reply": "done"}]
    _with_client(test, BackendSettings(rules=rules))


def test_a_function_of_the_clients_named_file_search_is_the_clients_to_answer() -> None:
    from runner.server.app import BackendSettings

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        own = {"type": "function", "function": {"name": "file_search", "parameters": {"type": "object"}}}
        assistant = await client.beta.assistants.create(model="scripted", tools=[{"type": "file_search"}, own])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "look up x"}]},
            poll_interval_ms=10)
        assert run.status == "requires_action"

    _with_client(test, BackendSettings(rules=SEARCHING_RULES))


def test_a_live_model_is_offered_file_search_as_a_function_and_reads_the_results() -> None:
    from fake_upstream import chat_body, fake_upstream

    from runner.server.app import BackendSettings
    from runner.server.providers import LiveSettings
    from runner.server.providers.upstream import UpstreamConfig

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        assistant = await client.beta.assistants.create(
            model="chat/tiny", tools=[{"type": "file_search"}, WEATHER_FUNCTION],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}})
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "What pulls the tides?"}]},
            poll_interval_ms=10)
        assert run.status == "completed", run.last_error
        reply = (await client.beta.threads.messages.list(run.thread_id)).data[0]
        assert [a.text for a in reply.content[0].text.annotations] == ["【0:0†tides.md】"]  # type: ignore[union-attr]

    with fake_upstream() as fake:
        fake.queue("/chat/completions",
                   (200, chat_body(calls=[("file_search", {"query": "tides moon"})]), {}),
                   (200, chat_body(text="The moon does 【0:0†tides.md】."), {}))
        live = LiveSettings(chat=UpstreamConfig(base_url=fake.url, api_key="unused"), default="chat")
        _with_client(test, BackendSettings(live=live))
        first, second = fake.bodies("/chat/completions")
    names = [t["function"]["name"] for t in first["tools"]]
    assert names == ["get_weather", "file_search"]
    assert first["tools"][1]["function"]["parameters"]["required"] == ["query"]
    assistant_turn, tool_turn = second["messages"][1:]  # after the user message (no instructions)
    assert assistant_turn["tool_calls"][0]["function"]["name"] == "file_search"
    assert tool_turn["role"] == "tool" and "【0:0†tides.md】" in tool_turn["content"] and "moon" in tool_turn["content"]


def test_the_responses_provider_gets_file_search_as_a_function_and_its_output_as_an_item() -> None:
    from fake_upstream import fake_upstream, response_body

    from runner.server.app import BackendSettings
    from runner.server.providers import LiveSettings
    from runner.server.providers.upstream import UpstreamConfig

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store_id = await _store(client, backend)
        assistant = await client.beta.assistants.create(
            model="gpt-test", tools=[{"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}})
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "bread?"}]},
            poll_interval_ms=10)
        assert run.status == "completed", run.last_error

    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(calls=[("file_search", {"query": "sourdough"})]), {}),
                   (200, response_body(text="Flour and water 【0:0†bread.txt】."), {}))
        live = LiveSettings(openai=UpstreamConfig(base_url=fake.url, api_key="unused"))
        _with_client(test, BackendSettings(live=live))
        first, second = fake.bodies("/responses")
    assert [t["name"] for t in first["tools"]] == ["file_search"] and first["tools"][0]["type"] == "function"
    call, output = second["input"][1:]
    assert call["type"] == "function_call" and call["call_id"] == "call_fake0"
    assert output["type"] == "function_call_output" and "Sourdough bread" in output["output"]


def test_citations_point_at_the_results_their_markers_name() -> None:
    from runner.server.tools.file_search.citations import file_citations

    text = "é 【1:0†b.md】, 【0:1†source】, 【0:2†x】 and 【2:0†y】"
    found = file_citations(text, [["f-a", "f-b"], ["f-c"]])
    assert [(c["text"], c["file_citation"]["file_id"]) for c in found] == [("【1:0†b.md】", "f-c"),
                                                                          ("【0:1†source】", "f-b")]
    assert all(text[c["start_index"]:c["end_index"]] == c["text"] for c in found)


def test_a_search_query_is_read_from_what_a_model_sends() -> None:
    from runner.server.tools.functions import search_query

    assert search_query('{"query": "tides"}') == "tides"
    assert search_query('{"queries": ["tides", "moon"]}') == "tides moon"
    assert search_query('"tides"') == "tides" and search_query("tides moon") == "tides moon"
    assert search_query('{"q": "tides"}') == "tides"
