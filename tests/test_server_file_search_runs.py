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

    _with_client(test, BackendSettings(rules=[{"tool_output": r"\[0\] (\S+)", "reply": r"It says so in \1."}]))


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
