"""The engine against the embedded backend: multi-turn, tool calls, failing and slow runs, streaming and polling."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from conftest import run_async

from runner.engine.backend import BackendTarget, embedded_client, preflight, resolve_backend
from runner.engine.batch import Job, run_batch
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.expect import judge
from runner.server.app import Backend, BackendSettings
from runner.server.providers import ModelReply, ModelRequest
from runner.spec import BackendConfig, load_spec

WEATHER_RULES = """
      rules:
        - user: "weather in (\\\\w+) and (\\\\w+)"
          calls:
            - {name: get_weather, arguments: {city: "\\\\1"}}
            - {name: get_weather, arguments: {city: "\\\\2"}}
        - user: "weather in (\\\\w+)"
          call: {name: get_weather, arguments: {city: "\\\\1"}}
        - tool_output: "(\\\\d+)\\n(\\\\d+)"
          reply: "\\\\1 and \\\\2 degrees"
        - tool_output: "(\\\\d+)"
          reply: "\\\\1 degrees"
        - user: boom
          error: the model exploded
        - user: ".*"
          reply: "fallback"
"""


def weather_spec(write_spec, conversation: str, stream: bool = True):  # type: ignore[no-untyped-def]
    return load_spec(write_spec(f"""
    name: weather
    assistant:
      model: scripted
      tools:
        - name: get_weather
          parameters: {{type: object, properties: {{city: {{type: string}}}}}}
    backend:
      stream: {str(stream).lower()}
{WEATHER_RULES}
    conversation:
{conversation}
    """))


def _inspectable_client(backend: Backend):  # type: ignore[no-untyped-def]
    """Like embedded_client, but closing it leaves the backend open, so a test can look inside afterwards."""
    import httpx2
    from openai import AsyncOpenAI

    from runner.engine.asgi import StreamingASGITransport
    from runner.server.app import create_app

    http = httpx2.AsyncClient(transport=StreamingASGITransport(create_app(backend)), base_url="http://embedded.runner/v1")
    return AsyncOpenAI(api_key="x", base_url="http://embedded.runner/v1", http_client=http, max_retries=0)


async def _run(spec, backend: Backend | None = None, options: EngineOptions | None = None, target=None):  # type: ignore[no-untyped-def]
    target = target or BackendTarget(spec.backend)
    backend = backend or Backend(BackendSettings(rules=spec.backend.rules, provider=spec.backend.provider))
    client = _inspectable_client(backend)
    pool = AssistantPool(client)
    try:
        transcript = await run_conversation(spec, client, target, pool, options or EngineOptions())
        await pool.delete_created()
        return await judge(spec, transcript), backend
    finally:
        await client.close()


def test_multi_turn_echo_keeps_one_thread(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("""
    assistant: {model: echo, instructions: be brief}
    conversation:
      - user: first
      - user: second
        additional_instructions: more
      - user: third
        instructions: other
    """))
    transcript, backend = run_async(_run(spec))
    assert transcript.verdict == "passed"
    assert [t.reply for t in transcript.turns] == ["first", "second", "third"]
    assert all(t.status == "completed" and t.run_id and t.run_id.startswith("run_") for t in transcript.turns)
    assert all(t.usage and t.usage["total_tokens"] > 0 for t in transcript.turns)
    assert transcript.thread_id and transcript.thread_id.startswith("thread_")
    messages = backend.store.children("message", transcript.thread_id)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    runs = backend.store.children("run", transcript.thread_id)
    assert [r["instructions"] for r in runs] == ["be brief", "be brief\n\nmore", "other"]


def test_tool_calls_streaming_and_polling_give_the_same_transcript(write_spec) -> None:  # type: ignore[no-untyped-def]
    conversation = """
      - user: weather in Paris
        tool_outputs:
          get_weather: {template: "{{ 21 if args.city == 'Paris' else 5 }}"}
        expect: [{tool_called: {name: get_weather, arguments: {city: Paris}}}, {equals: 21 degrees}]
      - user: weather in Oslo and Rome
        tool_outputs:
          get_weather: {template: "{{ 3 if args.city == 'Oslo' else 25 }}"}
        expect: [{equals: 3 and 25 degrees}]
    """
    results = []
    for stream in (True, False):
        transcript, _ = run_async(_run(weather_spec(write_spec, conversation, stream)))
        assert transcript.verdict == "passed", transcript.failures()
        results.append([(t.reply, [(c.name, c.arguments, c.output) for c in t.tool_calls]) for t in transcript.turns])
    assert results[0] == results[1]
    assert results[0][1][1] == [("get_weather", {"city": "Oslo"}, "3"), ("get_weather", {"city": "Rome"}, "25")]


def test_failing_run_stops_the_conversation(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = weather_spec(write_spec, """
      - user: hello
      - user: boom
      - user: never sent
    """)
    transcript, backend = run_async(_run(spec))
    first, failed, skipped = transcript.turns
    assert first.status == "completed" and first.passed
    assert failed.status == "failed"
    assert failed.last_error == {"code": "server_error", "message": "the model exploded"}
    assert "the model exploded" in failed.checks[0].reason and not failed.checks[0].passed
    assert skipped.skipped and skipped.run_id is None
    assert transcript.verdict == "failed"
    # the skipped turn's message never reached the thread
    texts = [m["content"][0]["text"]["value"] for m in backend.store.children("message", transcript.thread_id)]
    assert "never sent" not in texts


def test_expected_failure_passes_and_the_conversation_goes_on(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = weather_spec(write_spec, """
      - user: boom
        expect: [{status: failed}]
      - user: still there?
        expect: [{equals: fallback}]
    """)
    transcript, _ = run_async(_run(spec))
    assert transcript.verdict == "passed", transcript.failures()
    assert [t.status for t in transcript.turns] == ["failed", "completed"]


def test_call_without_handler_fails_the_turn_and_cancels_the_run(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = weather_spec(write_spec, """
      - user: weather in Paris
      - user: never sent
    """)
    transcript, backend = run_async(_run(spec))
    turn = transcript.turns[0]
    assert "no tool_outputs entry for 'get_weather'" in (turn.error or "")
    assert turn.status == "cancelled"
    assert backend.store.get("run", turn.run_id)["status"] == "cancelled"
    assert transcript.turns[1].skipped
    assert transcript.verdict == "error"


class SlowProvider:
    name = "slow"

    async def respond(self, request: ModelRequest) -> ModelReply:
        await asyncio.sleep(30)
        return ModelReply(text="too late")


def test_timeout_cancels_the_run(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("""
    assistant: {model: slow}
    conversation: [{user: hi}]
    """))
    backend = Backend()
    backend.providers.providers["openai"] = SlowProvider()  # "slow" routes to the default live provider
    for stream in (True, False):
        run_spec = dataclasses.replace(spec, backend=BackendConfig(stream=stream))
        transcript, _ = run_async(_run(run_spec, backend, EngineOptions(timeout=0.3)))
        turn = transcript.turns[0]
        assert turn.status == "timeout"
        assert "did not finish within 0.3 s" in (turn.error or "")
        assert backend.store.get("run", turn.run_id)["status"] in ("cancelled", "cancelling")
        assert 250 < (turn.latency_ms or 0) < 5000


def test_assistant_is_shared_per_config_and_reused_by_id(write_spec) -> None:  # type: ignore[no-untyped-def]
    a = load_spec(write_spec("assistant: {model: echo, name: A}\nconversation: [{user: one}]\n", "a.yaml"))
    b = load_spec(write_spec("assistant: {model: echo, name: A}\nconversation: [{user: two}]\n", "b.yaml"))
    c = load_spec(write_spec("assistant: {model: echo, name: C}\nconversation: [{user: three}]\n", "c.yaml"))
    jobs = [Job(s, resolve_backend(s)) for s in (a, b, c)]
    seen = []
    transcripts = run_async(run_batch(jobs, EngineOptions(), concurrency=3, on_done=lambda j, t: seen.append(t.name)))
    assert [t.turns[0].reply for t in transcripts] == ["one", "two", "three"]
    assert transcripts[0].assistant_id == transcripts[1].assistant_id != transcripts[2].assistant_id
    assert sorted(seen) == ["a", "b", "c"]

    async def with_existing() -> str:
        backend = Backend()
        client = embedded_client(backend)
        assistant = await client.beta.assistants.create(model="echo")
        spec = load_spec(write_spec(f"assistant_id: {assistant.id}\nconversation: [{{user: hey}}]\n", "d.yaml"))
        transcript = await run_conversation(spec, client, BackendTarget(spec.backend), AssistantPool(client),
                                            EngineOptions())
        await client.close()
        assert transcript.assistant_id == assistant.id
        return transcript.turns[0].reply

    assert run_async(with_existing()) == "hey"


def test_unknown_assistant_id_is_an_error_not_a_crash(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("assistant_id: asst_missing\nconversation: [{user: hey}]\n"))
    transcript, _ = run_async(_run(spec))
    assert transcript.verdict == "error"
    assert "No assistant found with id 'asst_missing'" in (transcript.error or "")
    assert all(t.skipped for t in transcript.turns)


def test_remote_targets_clean_up_threads_and_assistants(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("assistant: {model: echo}\nconversation: [{user: hey}]\n"))
    remote = BackendTarget(BackendConfig(base_url="http://127.0.0.1:9/v1"))
    transcript, backend = run_async(_run(spec, target=remote))
    assert transcript.verdict == "passed"
    assert backend.store.list("thread").data == []
    assert backend.store.list("assistant").data == []
    kept, backend = run_async(_run(spec, target=remote, options=EngineOptions(keep=True)))
    assert len(backend.store.list("thread").data) == 1


def test_missing_api_key_env_makes_every_conversation_an_error(write_spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RUNNER_TEST_KEY", raising=False)
    spec = load_spec(write_spec("""
    assistant: {model: echo}
    backend: {base_url: "http://127.0.0.1:9/v1", api_key_env: RUNNER_TEST_KEY}
    conversation: [{user: hey}]
    """))
    (transcript,) = run_async(run_batch([Job(spec, resolve_backend(spec))], EngineOptions()))
    assert transcript.verdict == "error"
    assert "RUNNER_TEST_KEY" in (transcript.error or "") and "not set" in (transcript.error or "")


def test_resolve_backend_precedence(write_spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("assistant: {model: echo}\nconversation: [{user: hey}]\n"))
    monkeypatch.delenv("RUNNER_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://elsewhere.invalid/v1")  # never redirects the engine
    assert resolve_backend(spec).embedded
    monkeypatch.setenv("RUNNER_BASE_URL", "http://127.0.0.1:8000/v1")
    assert resolve_backend(spec).config.base_url == "http://127.0.0.1:8000/v1"
    assert resolve_backend(spec, base_url="http://127.0.0.1:1/v1").config.base_url == "http://127.0.0.1:1/v1"
    assert resolve_backend(spec, stream=False).config.stream is False


def test_preflight_names_unavailable_models(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("name: x\nassistant:\n  model: gpt-4o\nconversation: [{user: hey}]\n"))
    (problem,) = preflight(spec, resolve_backend(spec))
    assert problem.startswith(f"{spec.file}:3:10: assistant.model:") and "'gpt-4o'" in problem
    forced = dataclasses.replace(spec, backend=BackendConfig(provider="echo"))
    assert preflight(forced, resolve_backend(forced)) == []
    scripted = load_spec(write_spec("assistant:\n  model: scripted\nconversation: [{user: hey}]\n", "s.yaml"))
    (problem,) = preflight(scripted, resolve_backend(scripted))
    assert "needs rules" in problem


def test_backend_refusing_to_stream_is_polled_instead(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A remote endpoint without streaming answers 400 on `stream`; the engine polls it from then on."""
    import json

    import httpx2
    from openai import AsyncOpenAI

    from runner.engine.asgi import StreamingASGITransport
    from runner.server.app import create_app

    backend = Backend()
    app = create_app(backend)
    refused = []

    async def no_streaming(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/runs"):
            message = await receive()
            if json.loads(message["body"] or b"{}").get("stream"):
                refused.append(scope["path"])
                body = json.dumps({"error": {"message": "stream is not supported", "type": "invalid_request_error",
                                             "param": "stream", "code": None}}).encode()
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return

            async def replay():  # type: ignore[no-untyped-def]
                return message

            return await app(scope, replay, send)
        return await app(scope, receive, send)

    spec = load_spec(write_spec("assistant: {model: echo}\nconversation: [{user: one}, {user: two}]\n"))

    async def go():  # type: ignore[no-untyped-def]
        http = httpx2.AsyncClient(transport=StreamingASGITransport(no_streaming), base_url="http://x/v1")
        client = AsyncOpenAI(api_key="x", base_url="http://x/v1", http_client=http, max_retries=0)
        target = BackendTarget(spec.backend)
        transcript = await run_conversation(spec, client, target, AssistantPool(client), EngineOptions())
        await client.close()
        return transcript

    transcript = run_async(go())
    assert [t.reply for t in transcript.turns] == ["one", "two"]
    assert len(refused) == 1  # asked once, remembered for the next turn


@pytest.mark.parametrize(("first_turn", "calls"), [("{user: one}", 2),
                                                   ("{user: one, additional_instructions: extra}", 4)])
def test_first_turn_creates_thread_and_run_in_one_call_unless_it_has_additional_instructions(  # type: ignore[no-untyped-def]
        write_spec, first_turn: str, calls: int) -> None:
    import httpx2
    from openai import AsyncOpenAI

    from runner.engine.asgi import StreamingASGITransport
    from runner.server.app import create_app

    spec = load_spec(write_spec(f"assistant: {{model: echo, instructions: base}}\nconversation: [{first_turn}]\n"))
    backend = Backend()
    app = create_app(backend)
    seen: list[str] = []

    async def counting(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    async def go():  # type: ignore[no-untyped-def]
        http = httpx2.AsyncClient(transport=StreamingASGITransport(counting), base_url="http://x/v1")
        client = AsyncOpenAI(api_key="x", base_url="http://x/v1", http_client=http, max_retries=0)
        transcript = await run_conversation(spec, client, BackendTarget(spec.backend), AssistantPool(client),
                                            EngineOptions())
        await client.close()
        return transcript

    transcript = run_async(go())
    assert transcript.turns[0].reply == "one" and transcript.thread_id
    assert len(seen) == calls, seen  # assistant + create_and_run, or assistant + thread + message + run
    (run,) = backend.store.children("run", transcript.thread_id)
    assert run["instructions"] == ("base\n\nextra" if calls == 4 else "base")


class _Slowish:
    """Answers after a few event-loop turns, so a polling engine has to wait for it."""

    name = "slowish"

    async def respond(self, request: ModelRequest) -> ModelReply:
        for _ in range(200):
            await asyncio.sleep(0)
        return ModelReply(text="done")


@pytest.mark.parametrize(("hint_ms", "expected"), [(None, [0.05, 0.1, 0.2]), (7, [0.007, 0.007, 0.007])])
def test_polling_follows_the_backends_hint_or_backs_off(write_spec, monkeypatch, hint_ms, expected) -> None:  # type: ignore[no-untyped-def]
    """No fixed one-second sleep: openai-poll-after-ms when the backend sends it, else 50 ms doubling to 2 s."""
    import runner.server.routes.runs as runs_routes
    from runner.engine import conversation as conv

    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(conv.asyncio, "sleep", recorded_sleep)
    if hint_ms is None:  # a backend that sends no hint
        monkeypatch.setattr(runs_routes, "_run_response", lambda b, run: runs_routes.JSONResponse(run))
    spec = load_spec(write_spec("assistant: {model: slow}\nconversation: [{user: hi}]\nbackend: {stream: false}\n"))
    backend = Backend(BackendSettings(poll_after_ms=hint_ms or 25))
    backend.providers.providers["openai"] = _Slowish()  # type: ignore[assignment]
    transcript, _ = run_async(_run(spec, backend))
    assert transcript.turns[0].reply == "done"
    waits = [s for s in sleeps if s > 0]  # the provider's own zero-second yields are not the engine's waits
    assert waits and waits[:3] == expected[: len(waits[:3])]


def test_a_slow_backend_does_not_starve_the_others(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Eight slow conversations listed first, two fast ones on another backend: with -j 4 the fast ones
    do not wait for all the slow ones (each backend may hold at most three quarters of the slots)."""
    from runner.engine.batch import backend_share

    slow = [load_spec(write_spec(
        "assistant: {model: scripted}\nbackend: {rules: [{user: '.*', reply: ok, delay_ms: 150}]}\n"
        f"conversation: [{{user: slow {i}}}]\n", f"slow{i}.yaml")) for i in range(8)]
    fast = [load_spec(write_spec(f"assistant: {{model: echo}}\nconversation: [{{user: fast {i}}}]\n",
                                 f"fast{i}.yaml")) for i in range(2)]
    finished: list[str] = []
    jobs = [Job(s, resolve_backend(s)) for s in slow + fast]
    run_async(run_batch(jobs, EngineOptions(), concurrency=4, on_done=lambda j, t: finished.append(t.turns[0].user)))
    assert set(finished[:4]) >= {"fast 0", "fast 1"}, finished  # not behind the eight slow ones
    assert backend_share(4, 1) == 4 and backend_share(4, 2) == 3 and backend_share(1, 3) == 1


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_sse_events_from_bytes_cut_anywhere(size: int) -> None:
    """Events split across chunks at any byte (mid-line, mid-CRLF, mid-UTF-8), comments, multi-line data,
    CRLF endings, a last event with no blank line after it, and nothing after `done`."""
    from types import SimpleNamespace

    from runner.engine.conversation import sse_events

    body = ("event: thread.run.created\r\ndata: {\"a\": \"é\"}\r\n\r\n"
            ": keep-alive\n\n"
            "event: thread.message.delta\ndata: line one\ndata: line two\n\n"
            "data: no event name\n\n"
            "event: thread.run.completed\ndata: {}").encode()

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), size):
            yield body[start:start + size]

    async def collect(raw: bytes) -> list[tuple[str, str]]:
        nonlocal body
        body = raw
        response = SimpleNamespace(http_response=SimpleNamespace(aiter_bytes=chunks))
        return [event async for event in sse_events(response)]

    assert run_async(collect(body)) == [
        ("thread.run.created", '{"a": "é"}'), ("thread.message.delta", "line one\nline two"),
        ("message", "no event name"), ("thread.run.completed", "{}")]
    done = b"event: a\ndata: 1\n\nevent: done\ndata: [DONE]\n\nevent: b\ndata: 2\n\n"
    assert run_async(collect(done)) == [("a", "1")]
