"""The Conversations API, driven by the official SDK in-process; every body checked with the SDK's types (the SDK
parses them) and, when the shared folder is beside the repo, the reference schemas."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import yaml
from conftest import run_async
from test_reference_conformance import _nullable_to_jsonschema

from runner.engine.backend import embedded_client
from runner.server.app import Backend, BackendSettings

REFERENCE = (Path(__file__).resolve().parents[2] / "shared" / "reference"
             / "openai-responses-conversations.openapi.yaml")


@cache
def _components() -> Any:
    return _nullable_to_jsonschema(yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))["components"])


def reference_check(schema: str, body: Any) -> None:
    """Validate `body` (an SDK object or its JSON) against a schema of the Responses and Conversations reference
    (nothing to do where it is absent)."""
    if not isinstance(body, dict):
        body = body.model_dump(mode="json", exclude_unset=True)
    if not REFERENCE.exists():
        return
    root = {**copy.deepcopy({"$ref": f"#/components/schemas/{schema}"}), "components": _components()}
    errors = list(jsonschema.Draft202012Validator(root).iter_errors(body))
    assert not errors, f"{schema}: " + "; ".join(e.message[:300] for e in errors[:5])


def with_client(test: Any, settings: BackendSettings | None = None) -> Any:
    """Run `await test(client, backend)` against a fresh in-process backend."""
    async def go() -> Any:
        backend = Backend(settings)
        client = embedded_client(backend)
        try:
            return await test(client, backend)
        finally:
            await client.close()
    return run_async(go())


def test_the_sdk_drives_every_conversations_method() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        conv = await client.conversations.create(
            metadata={"spec": "greet"},
            items=[{"type": "message", "role": "user", "content": "hello"},
                   {"role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}])
        reference_check("ConversationResource", conv)
        assert conv.id.startswith("conv_") and conv.metadata == {"spec": "greet"}
        assert (await client.conversations.retrieve(conv.id)).model_dump() == conv.model_dump()
        updated = await client.conversations.update(conv.id, metadata={"spec": "other"})
        assert updated.metadata == {"spec": "other"}

        page = await client.conversations.items.list(conv.id, order="asc")
        reference_check("ConversationItemList", page.model_dump(mode="json", exclude_unset=True))
        assert [(i.type, i.role, i.content[0].type) for i in page.data] == [  # type: ignore[union-attr]
            ("message", "user", "input_text"), ("message", "assistant", "output_text")]
        assert [i.id for i in (await client.conversations.items.list(conv.id)).data] == [
            i.id for i in reversed(page.data)]  # newest first by default

        added = await client.conversations.items.create(conv.id, items=[
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "21"}])
        reference_check("ConversationItemList", added.model_dump(mode="json", exclude_unset=True))
        assert [i.type for i in added.data] == ["function_call", "function_call_output"]
        first = await client.conversations.items.list(conv.id, order="asc", limit=1)
        assert len(first.data) == 1 and first.has_more
        rest = await client.conversations.items.list(conv.id, order="asc", after=first.data[0].id,
                                                     include=["message.output_text.logprobs"])
        assert len(rest.data) == 3 and not rest.has_more

        got = await client.conversations.items.retrieve(added.data[1].id, conversation_id=conv.id)
        reference_check("ConversationItem", got.model_dump(mode="json", exclude_unset=True))
        assert got.model_dump() == added.data[1].model_dump()
        after_delete = await client.conversations.items.delete(added.data[1].id, conversation_id=conv.id)
        assert after_delete.id == conv.id
        assert len((await client.conversations.items.list(conv.id)).data) == 3

        deleted = await client.conversations.delete(conv.id)
        reference_check("DeletedConversationResource", deleted)
        assert deleted.deleted and deleted.id == conv.id
        with pytest.raises(openai.NotFoundError) as info:
            await client.conversations.retrieve(conv.id)
        assert info.value.body["param"] == "conversation_id"  # type: ignore[index]
        assert backend.store.list("conversation_item").data == []  # its items went with it

    with_client(test)


@pytest.mark.parametrize(("call", "param"), [
    ("retrieve", "conversation_id"), ("items.list", "conversation_id"), ("item", "item_id"),
])
def test_unknown_ids_are_404s_naming_the_param(call: str, param: str) -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        conv = await client.conversations.create()
        with pytest.raises(openai.NotFoundError) as info:
            if call == "retrieve":
                await client.conversations.retrieve("conv_nope")
            elif call == "items.list":
                await client.conversations.items.list("conv_nope")
            else:
                await client.conversations.items.retrieve("msg_nope", conversation_id=conv.id)
        assert info.value.body["param"] == param  # type: ignore[index]

    with_client(test)


@pytest.mark.parametrize(("items", "param"), [
    ([{"role": "robot", "content": "x"}], "items[0].role"),
    ([{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}], "items[0].content[0]"),
    ([{"type": "web_search_call", "id": "ws_1"}], "items[0].type"),
    ([{"type": "function_call_output", "output": "x"}], "items[0].call_id"),
    ([{"role": "user"}], "items[0].content"),
    ([{"role": "user", "content": "x"}] * 21, "items"),
])
def test_bad_items_are_400s_naming_the_param(items: list[dict[str, Any]], param: str) -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            await client.conversations.create(items=items)  # type: ignore[arg-type]
        assert info.value.body["param"] == param  # type: ignore[index]
        conv = await client.conversations.create()
        with pytest.raises(openai.BadRequestError) as info:
            await client.conversations.items.create(conv.id, items=items)  # type: ignore[arg-type]
        assert info.value.body["param"] == param  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as info:
            await client.conversations.items.list(conv.id, include=["nonsense"])  # type: ignore[list-item]
        assert info.value.body["param"] == "include"  # type: ignore[index]

    with_client(test)
