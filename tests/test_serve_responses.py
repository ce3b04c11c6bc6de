"""The Responses and Conversations APIs over HTTP, from `runner serve`: a 2025-style script runs unchanged, and the
official SDK drives the Responses methods and streams over a real socket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest
from serve_process import clean_env, serving
from test_server_responses import WEATHER, checked

KIT = Path(__file__).resolve().parent / "data" / "responses_quickstart"


def test_the_responses_quickstart_runs_unchanged(tmp_path: Path) -> None:
    with serving(tmp_path, "--provider", "scripted", "--rules", str(KIT / "rules.yaml")) as server:
        proc = subprocess.run([sys.executable, "-W", "ignore", str(KIT / "quickstart.py")],
                              env=clean_env(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-anything"),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [
            "Hi Ann!", "It is 21 degrees.", "Hi Bob!", "completed", "True",
            "8 ['message', 'message', 'message']", "True"]


def test_the_sdk_drives_the_responses_methods_over_http(tmp_path: Path) -> None:
    with serving(tmp_path, "--provider", "scripted", "--rules", str(KIT / "rules.yaml")) as server:
        client = openai.OpenAI(base_url=server.url, api_key="sk-anything", max_retries=0)
        try:
            conv = client.conversations.create(items=[{"role": "user", "content": "hello Eve"}])
            first = checked(client.responses.create(model="scripted", input="weather in Oslo", tools=[WEATHER],
                                                    conversation=conv.id))
            call = first.output[0]
            with client.responses.stream(
                    model="scripted", tools=[WEATHER], previous_response_id=first.id,
                    input=[{"type": "function_call_output", "call_id": call.call_id,  # type: ignore[union-attr]
                            "output": "9"}]) as stream:
                types = [event.type for event in stream]
                final = stream.get_final_response()
            assert final.output_text == "It is 9 degrees." and types[-1] == "response.completed"
            assert checked(client.responses.retrieve(final.id)).output_text == final.output_text
            assert [i.type for i in client.responses.input_items.list(final.id).data] == ["function_call_output"]
            with pytest.raises(openai.BadRequestError):
                client.responses.cancel(final.id)
            client.responses.delete(final.id)
            with pytest.raises(openai.NotFoundError):
                client.responses.retrieve(final.id)
            listed = client.conversations.items.list(conv.id)
            assert len(listed.data) == 3  # its own item, the input and the call
            assert client.conversations.update(conv.id, metadata={"k": "v"}).metadata == {"k": "v"}
            assert client.conversations.retrieve(conv.id).metadata == {"k": "v"}
            item = client.conversations.items.retrieve(listed.data[0].id, conversation_id=conv.id)
            assert item.model_dump() == listed.data[0].model_dump()
            assert client.conversations.items.delete(item.id, conversation_id=conv.id).id == conv.id
            added = client.conversations.items.create(conv.id, items=[{"role": "user", "content": "hello Max"}])
            assert [i.id for i in client.conversations.items.list(conv.id, limit=1).data] == [added.data[0].id]
            assert client.conversations.delete(conv.id).deleted
            with pytest.raises(openai.NotFoundError):
                client.conversations.retrieve(conv.id)
        finally:
            client.close()
