"""Files and vector stores named by assistants, threads and messages must exist (the hosted API refused
unknown ids; accepted, they silently did nothing), and a store asked for inline is made."""

from __future__ import annotations

import openai
import pytest
from test_server_files import _with_client

from runner.server.app import Backend


def _param(exc: pytest.ExceptionInfo[openai.APIStatusError]) -> str:
    return exc.value.body["param"]  # type: ignore[index,no-any-return]


def test_unknown_ids_are_404s_naming_the_param_and_make_nothing() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        with pytest.raises(openai.NotFoundError) as store:
            await client.beta.assistants.create(model="echo", tools=[{"type": "file_search"}],
                                                tool_resources={"file_search": {"vector_store_ids": ["vs_nope"]}})
        assert _param(store) == "tool_resources.file_search.vector_store_ids[0]"
        assert "No vector store found with id 'vs_nope'" in str(store.value)
        with pytest.raises(openai.NotFoundError) as inline:
            await client.beta.assistants.create(model="echo", tool_resources={
                "file_search": {"vector_stores": [{"file_ids": ["file-nope"]}]}})
        assert _param(inline) == "tool_resources.file_search.vector_stores[0].file_ids[0]"
        assert (await client.beta.assistants.list()).data == [] and (await client.vector_stores.list()).data == []
        with pytest.raises(openai.NotFoundError) as code:
            await client.beta.threads.create(tool_resources={"code_interpreter": {"file_ids": ["file-nope"]}})
        assert _param(code) == "tool_resources.code_interpreter.file_ids[0]"
        with pytest.raises(openai.NotFoundError) as attached:
            await client.beta.threads.create(messages=[{"role": "user", "content": "hi", "attachments": [
                {"file_id": "file-nope", "tools": [{"type": "file_search"}]}]}])
        assert _param(attached) == "messages[0].attachments[0].file_id"
        thread = await client.beta.threads.create()
        with pytest.raises(openai.NotFoundError) as message:
            await client.beta.threads.messages.create(thread.id, role="user", content="hi", attachments=[
                {"file_id": "file-nope", "tools": [{"type": "file_search"}]}])
        assert _param(message) == "attachments[0].file_id"
        assistant = await client.beta.assistants.create(model="echo")
        with pytest.raises(openai.NotFoundError) as in_run:
            await client.beta.threads.create_and_run(assistant_id=assistant.id, thread={"messages": [
                {"role": "user", "content": "hi", "attachments": [{"file_id": "file-nope",
                                                                   "tools": [{"type": "file_search"}]}]}]})
        assert _param(in_run) == "thread.messages[0].attachments[0].file_id"
        with pytest.raises(openai.NotFoundError) as update:
            await client.beta.assistants.update(assistant.id, tool_resources={
                "file_search": {"vector_store_ids": ["vs_nope"]}})
        assert _param(update) == "tool_resources.file_search.vector_store_ids[0]"

    _with_client(test)


def test_a_vector_store_asked_for_inline_is_made_and_indexed() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        file = await client.files.create(file=("tides.md", b"Tides follow the moon.", "text/markdown"),
                                         purpose="assistants")
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "file_search"}],
                                                        tool_resources={"file_search": {"vector_stores": [
                                                            {"file_ids": [file.id], "metadata": {"made": "inline"}}]}})
        ids = assistant.tool_resources.file_search.vector_store_ids  # type: ignore[union-attr]
        assert ids is not None and len(ids) == 1
        await backend.ingestor.settled()
        store = await client.vector_stores.retrieve(ids[0])
        assert store.file_counts.completed == 1 and store.metadata == {"made": "inline"}
        thread = await client.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": ids}})
        assert thread.tool_resources.file_search.vector_store_ids == ids  # type: ignore[union-attr]

    _with_client(test)
