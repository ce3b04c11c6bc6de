"""Shared helpers for the built-in backend's tests: an in-process backend reached through the official SDK.

Tests are plain sync functions; `serve(body)` runs `await body(env)` in a fresh event loop against a
fresh in-memory backend (or the settings given), with the SDK's deprecation warnings silenced.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pydantic
from openai.types.beta.assistant_stream_event import AssistantStreamEvent

from runner.server import Backend, BackendSettings, create_app

BASE_URL = "http://embedded.runner/v1"

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current temperature of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

# the scripted model's rules used by default: first match wins
RULES: list[dict[str, Any]] = [
    {"user": r"weather in (\w+)", "call": {"name": "get_weather", "arguments": {"city": r"\1"}}},
    {"user": r"compare (?P<a>\w+) and (?P<b>\w+)", "calls": [
        {"name": "get_weather", "arguments": {"city": r"\g<a>"}},
        {"name": "get_weather", "arguments": {"city": r"\g<b>", "unit": "C"}},
    ]},
    {"user": r"chain (\w+)", "call": {"name": "lookup", "arguments": {"key": r"\1"}}},
    {"tool_output": r"^next:(\w+)$", "call": {"name": "get_weather", "arguments": {"city": r"\1"}}},
    {"tool_output": r"(?P<x>\d+)\n(?P<y>\d+)", "reply": r"Between \g<x> and \g<y> degrees."},
    {"tool_output": r"(\d+)", "reply": r"It is \1 degrees."},
    {"tool_output": "explode", "error": "tool output made it explode"},
    {"user": "boom", "error": "kaboom"},
    {"user": r"hello (?P<who>\w+)", "reply": r"Hi \g<who>!"},
]

_EVENT = pydantic.TypeAdapter(AssistantStreamEvent)


@dataclass
class Env:
    """One backend and an SDK client reaching it in-process."""

    backend: Backend
    client: openai.AsyncOpenAI

    async def assistant(self, model: str = "echo", **kw: Any) -> Any:
        return check(await self.client.beta.assistants.create(model=model, **kw))

    async def scripted(self, **kw: Any) -> Any:
        return await self.assistant("scripted", tools=[WEATHER_TOOL], **kw)

    async def thread(self, *texts: str, **kw: Any) -> Any:
        messages = [{"role": "user", "content": t} for t in texts]
        return check(await self.client.beta.threads.create(messages=messages, **kw) if messages
                     else await self.client.beta.threads.create(**kw))

    async def settle(self) -> None:
        """Let every run the executor is driving reach its stopping point."""
        for _ in range(100):
            tasks = list(self.backend.executor._tasks.values())
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)
        raise AssertionError("runs never settled")

    async def messages(self, thread_id: str, **kw: Any) -> list[Any]:
        page = await self.client.beta.threads.messages.list(thread_id, **kw)
        return [check(m) for m in page.data]

    async def texts(self, thread_id: str) -> list[tuple[str, str]]:
        """(role, text) of every message of a thread, oldest first."""
        return [(m.role, text_of(m)) for m in await self.messages(thread_id, order="asc", limit=100)]


def make_client(app: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="test", base_url=BASE_URL, max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE_URL),
    )


def serve(body: Callable[[Env], Awaitable[Any]], *, rules: Sequence[dict[str, Any]] | None = RULES,
          provider: str | None = None, db_path: str = ":memory:", backend: Backend | None = None) -> Any:
    """Run `body(env)` against a fresh backend (or `backend`) in its own event loop."""

    async def main() -> Any:
        b = backend or Backend(BackendSettings(db_path=db_path, rules=rules, provider=provider))
        client = make_client(create_app(b))
        try:
            return await body(Env(b, client))
        finally:
            await client.close()
            await b.executor.shutdown()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.run(main())


def check(obj: Any) -> Any:
    """Validate an object the SDK returned against its own pydantic type (the SDK only constructs them)."""
    cls = type(obj)
    validated = cls.model_validate(obj.to_dict(mode="json"))
    assert validated.to_dict(mode="json") == obj.to_dict(mode="json")
    assert not (obj.model_extra or {}), f"unexpected fields on {cls.__name__}: {obj.model_extra}"
    return validated


def check_event(event: Any) -> Any:
    """Validate a streamed event against the SDK's discriminated union of assistant stream events."""
    validated = _EVENT.validate_python(event.to_dict(mode="json"))
    assert type(validated) is type(event)
    return validated


async def drain(stream: Any) -> list[Any]:
    """Every event of a raw SDK stream, validated."""
    return [check_event(ev) async for ev in stream]


def names(events: Sequence[Any]) -> list[str]:
    return [ev.event for ev in events]


def text_of(message: Any) -> str:
    return "".join(part.text.value for part in message.content if part.type == "text")


def error_json(exc: openai.APIStatusError) -> dict[str, Any]:
    """The raw JSON body of an error response, after checking it has the official shape."""
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["type"], str)
    return body["error"]
