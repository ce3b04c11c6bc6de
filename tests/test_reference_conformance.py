"""Every body the embedded backend returns, validated against the official Assistants OpenAPI description.

The reference file lives in the team's shared folder beside the repository (`../shared/reference/`);
a user's clone does not have it, so these tests skip there. The SDK-type checks in the other server
tests always run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import EXAMPLES, run_async

from runner.engine.asgi import StreamingASGITransport
from runner.engine.backend import BackendTarget
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.server.app import Backend, BackendSettings, create_app
from runner.spec import BackendConfig, load_spec

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "openai-assistants-v2.openapi.yaml"

pytestmark = pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference OpenAPI file is not beside the repo")


def _nullable_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema: null becomes one more allowed value."""
    if isinstance(node, list):
        return [_nullable_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_jsonschema(v) for k, v in node.items()}
    if out.pop("nullable", False):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


class Reference:
    def __init__(self) -> None:
        doc = yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))
        self.components = _nullable_to_jsonschema(doc["components"])
        self.routes: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        for path, ops in doc["paths"].items():
            pattern = re.compile("^/v1" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
            for method, op in ops.items():
                if isinstance(op, dict) and "responses" in op:
                    self.routes.append((method.upper(), pattern, op["responses"]))
        self.events: dict[str, dict[str, Any]] = {}
        for group in ("ThreadStreamEvent", "RunStreamEvent", "RunStepStreamEvent", "MessageStreamEvent"):
            for alternative in self.components["schemas"][group]["oneOf"]:
                for name in alternative["properties"]["event"]["enum"]:
                    self.events[name] = alternative["properties"]["data"]

    def validate(self, schema: dict[str, Any], body: Any, what: str) -> None:
        root = {**copy.deepcopy(schema), "components": self.components}
        errors = sorted(jsonschema.Draft4Validator(root).iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{what}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any]:
        for route_method, pattern, responses in self.routes:
            if route_method == method and pattern.match(path):
                if status >= 400:
                    return {"$ref": "#/components/schemas/ErrorResponse"}
                return responses[str(status)]["content"]["application/json"]["schema"]
        raise AssertionError(f"{method} {path} is not in the reference")


class Recorder:
    """An ASGI wrapper keeping every response of the app: (method, path, status, content type, body)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int, str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        meta: dict[str, Any] = {}
        parts: list[bytes] = []

        async def keep(message: Any) -> None:
            if message["type"] == "http.response.start":
                meta["status"] = message["status"]
                meta["type"] = dict(message["headers"]).get(b"content-type", b"").decode()
            else:
                parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.seen.append((scope["method"], scope["path"], meta["status"], meta["type"], b"".join(parts)))
            await send(message)

        await self.app(scope, receive, keep)


@contextlib.contextmanager
def serving_in_thread(app: Any) -> Iterator[str]:
    """Serve `app` over HTTP on loopback with uvicorn, the server `runner serve` uses; yield its /v1 URL."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference()


def _check_all(reference: Reference, recorder: Recorder) -> int:
    checked = 0
    for method, path, status, content_type, body in recorder.seen:
        what = f"{method} {path} -> {status}"
        if content_type.startswith("text/event-stream"):
            for block in body.decode().strip().split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.splitlines())
                if fields["event"] == "done":
                    assert fields["data"] == "[DONE]"
                    continue
                assert fields["event"] in reference.events, f"{what}: unknown event {fields['event']}"
                reference.validate(reference.events[fields["event"]], json.loads(fields["data"]),
                                   f"{what} event {fields['event']}")
                checked += 1
        else:
            reference.validate(reference.response_schema(method, path, status), json.loads(body), what)
            checked += 1
    return checked


async def _drive(recorder: Recorder, spec_files: list[Path], stream: bool, url: str | None,
                 coding: bool = False) -> None:
    import httpx2
    from openai import AsyncAssistantEventHandler, AsyncOpenAI

    if url is None:  # in-process
        http = httpx2.AsyncClient(transport=StreamingASGITransport(recorder), base_url="http://embedded.runner/v1")
        client = AsyncOpenAI(api_key="x", base_url="http://embedded.runner/v1", http_client=http, max_retries=0)
    else:  # over real HTTP
        client = AsyncOpenAI(api_key="x", base_url=url, max_retries=0)
    pool = AssistantPool(client)
    for file in spec_files:
        spec = load_spec(file)
        target = BackendTarget(BackendConfig(base_url="http://remote.test/v1", stream=stream))  # exercises deletes
        transcript = await run_conversation(spec, client, target, pool, EngineOptions())
        assert transcript.error is None, transcript.error
    await pool.delete_created()
    # the remaining endpoints and the error shape
    beta = client.beta
    asst = await beta.assistants.create(model="echo", metadata={"k": "v"}, response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {"type": "object"}}})
    assert asst.response_format.json_schema.schema_ == {"type": "object"}  # type: ignore[union-attr]
    await beta.assistants.update(asst.id, name="renamed")
    await beta.assistants.list(limit=1)
    thread = await beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    await beta.threads.update(thread.id, metadata={"a": "b"})
    await beta.threads.retrieve(thread.id)
    run = await beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id)
    await beta.threads.runs.list(thread_id=thread.id)
    await beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"x": "y"})
    steps = await beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    await beta.threads.runs.steps.retrieve(steps.data[0].id, thread_id=thread.id, run_id=run.id)
    messages = await beta.threads.messages.list(thread_id=thread.id)
    await beta.threads.messages.retrieve(messages.data[0].id, thread_id=thread.id)
    await beta.threads.messages.update(messages.data[0].id, thread_id=thread.id, metadata={"m": "1"})
    await beta.threads.messages.delete(messages.data[0].id, thread_id=thread.id)
    await beta.threads.create_and_run_poll(assistant_id=asst.id, thread={"messages": [{"role": "user", "content": "x"}]})

    class Collect(AsyncAssistantEventHandler):
        def __init__(self) -> None:
            super().__init__()
            self.text = ""

        async def on_text_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def, override]
            self.text += delta.value or ""

    await beta.threads.messages.create(thread.id, role="user", content="streamed")
    handler = Collect()
    async with beta.threads.runs.stream(thread_id=thread.id, assistant_id=asst.id, event_handler=handler) as s:
        await s.until_done()
    assert handler.text == "streamed"
    async with beta.threads.create_and_run_stream(
            assistant_id=asst.id, thread={"messages": [{"role": "user", "content": "and run"}]}) as s:
        assert (await s.get_final_messages())[0].content[0].text.value == "and run"  # type: ignore[union-attr]
    weather = await beta.assistants.create(model="scripted", tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    for finish in ("poll", "stream", "cancel"):
        t = await beta.threads.create(messages=[{"role": "user", "content": "What is the weather in Paris?"}])
        waiting = await beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=weather.id)
        assert waiting.status == "requires_action"
        outputs = [{"tool_call_id": c.id, "output": '{"temperature": 19}'}
                   for c in waiting.required_action.submit_tool_outputs.tool_calls]  # type: ignore[union-attr]
        if finish == "poll":
            done = await beta.threads.runs.submit_tool_outputs_and_poll(
                run_id=waiting.id, thread_id=t.id, tool_outputs=outputs)  # type: ignore[arg-type]
            assert done.status == "completed"
        elif finish == "stream":
            async with beta.threads.runs.submit_tool_outputs_stream(
                    run_id=waiting.id, thread_id=t.id, tool_outputs=outputs) as s:  # type: ignore[arg-type]
                await s.until_done()
                assert (await s.get_final_run()).status == "completed"
        else:
            assert (await beta.threads.runs.cancel(waiting.id, thread_id=t.id)).status == "cancelled"
    if coding:  # the code interpreter's step (input, logs) and its stream, where a sandbox runs here
        coder = await beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        ran = await beta.threads.create_and_run_poll(assistant_id=coder.id, tool_choice={"type": "code_interpreter"},
                                                     thread={"messages": [{"role": "user", "content": "print(1)"}]})
        assert ran.status == "completed"
        await beta.threads.runs.steps.list(ran.id, thread_id=ran.thread_id)
        async with beta.threads.create_and_run_stream(
                assistant_id=coder.id, tool_choice={"type": "code_interpreter"},
                thread={"messages": [{"role": "user", "content": "1 / 0"}]}) as s:
            await s.until_done()
    from openai import NotFoundError

    for bad in (beta.assistants.retrieve("asst_nope"), beta.threads.runs.cancel("run_nope", thread_id=thread.id)):
        with pytest.raises(NotFoundError):
            await bad
    await beta.threads.delete(thread.id)
    await client.close()


@pytest.mark.parametrize("over", ["in-process", "http"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "poll"])
def test_every_response_matches_the_reference(reference: Reference, stream: bool, over: str) -> None:
    from runner.server.tools.code_interpreter import CodeLimits, SandboxUnavailable, prepare

    try:
        prepare()
        code: CodeLimits | None = CodeLimits()
    except SandboxUnavailable:
        code = None  # the code interpreter's shapes are left unchecked where no sandbox runs
    rules = load_spec(EXAMPLES / "weather_tool.yaml").backend.rules
    recorder = Recorder(create_app(Backend(BackendSettings(rules=rules, code_interpreter=code))))
    specs = [p for p in sorted(EXAMPLES.glob("*_*.yaml")) if "live" not in p.stem] + [EXAMPLES / "hello.yaml"]
    if over == "http":
        with serving_in_thread(recorder) as url:
            run_async(_drive(recorder, specs, stream, url, code is not None))
    else:
        run_async(_drive(recorder, specs, stream, None, code is not None))
    checked = _check_all(reference, recorder)
    assert checked > 40
    if stream:
        assert any(t.startswith("text/event-stream") for *_, t, _b in recorder.seen)
