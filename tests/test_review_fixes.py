"""Regression tests for problems found in review: secrets in errors, rules, budgets, timeouts, routing."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from conftest import run_async

from runner.cli import cli
from runner.engine.asgi import StreamingASGITransport
from runner.engine.backend import BackendTarget
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.redact import Redactor
from runner.server.budget import police_reply
from runner.server.providers import LiveSettings, ModelReply, route
from runner.server.providers.upstream import BadKey, read_key
from runner.spec import BackendConfig, SpecInvalid, load_spec

KEY = "sk-crlf-" + "p4" * 15


def test_keys_are_stripped_and_control_characters_refused() -> None:
    assert read_key({"K": f"  {KEY}\r\n"}, "K") == KEY
    assert read_key({}, "K") is None
    with pytest.raises(BadKey) as info:
        read_key({"K": f"sk-a\x00b{KEY}"}, "K")
    assert "K holds control characters" in str(info.value) and KEY not in str(info.value)
    assert LiveSettings.from_env({"OPENAI_API_KEY": f"{KEY}\r"}).openai.api_key == KEY  # type: ignore[union-attr]


def test_scrub_catches_quoted_forms_of_a_secret() -> None:
    odd = KEY + "\r"
    message = f"Illegal header value b'Bearer {odd!r}' and raw {odd}"
    assert KEY not in Redactor({"K": odd}).text(message).replace("<K>", "")


def test_a_key_with_a_carriage_return_never_reaches_output(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("assistant: {model: echo}\nconversation: [{user: hi}]\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "s.yaml", "--base-url", "http://127.0.0.1:9/v1", "--record", "all",
                                      "--timeout", "5"], env={"RUNNER_API_KEY": f"{KEY}\r\x01"})
    written = "".join(p.read_text(encoding="utf-8") for p in tmp_path.rglob("*.*"))
    assert result.exit_code == 1
    assert "RUNNER_API_KEY holds control characters" in result.output
    assert KEY not in result.output + written


def test_rule_answers_may_only_use_groups_their_trigger_has(write_spec) -> None:  # type: ignore[no-untyped-def]
    path = write_spec(r"""
    assistant: {model: scripted}
    backend:
      rules:
        - {user: "hi (\\w+)", reply: "hello \\2"}
        - {user: "x (?P<a>\\w+)", call: {name: f, arguments: {v: "\\g<b>"}}}
        - {user: "y (\\w+)", reply: "fine \\1 \\g<0> \\g<1>"}
    conversation: [{user: hi}]
    """)
    with pytest.raises(SpecInvalid) as info:
        load_spec(path)
    assert [(e.path, e.message.split(" refers")[0]) for e in info.value.errors] == [
        ("backend.rules[0].reply", r"\2"), ("backend.rules[1].call.arguments.v", r"\g<b>")]


def test_the_completion_budget_never_wipes_a_short_reply() -> None:
    reply = police_reply(ModelReply(text="Paris is sunny today", completion_tokens=12), {"max_completion_tokens": 10})
    assert reply.text == "Paris is sunny today" and reply.incomplete_reason == "max_completion_tokens"
    cut = police_reply(ModelReply(text="one two three four", completion_tokens=4), {"max_completion_tokens": 2})
    assert cut.text == "one two" and cut.completion_tokens == 2


def test_a_forced_provider_does_not_send_its_own_prefix_upstream() -> None:
    assert route("chat/llama3.2", "chat", "openai") == ("chat", "llama3.2")
    assert route("openai/gpt-4o", "chat", "openai") == ("chat", "openai/gpt-4o")


def test_timeout_bounds_the_setup_calls_too(write_spec) -> None:  # type: ignore[no-untyped-def]
    """An endpoint that accepts requests but never answers: --timeout ends the conversation."""
    import httpx2
    from openai import AsyncOpenAI

    async def never_answers(scope, receive, send):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3600)

    spec = load_spec(write_spec("assistant: {model: echo}\nconversation: [{user: hi}]\n"))

    async def go():  # type: ignore[no-untyped-def]
        http = httpx2.AsyncClient(transport=StreamingASGITransport(never_answers), base_url="http://x/v1")
        client = AsyncOpenAI(api_key="x", base_url="http://x/v1", http_client=http, max_retries=0)
        target = BackendTarget(BackendConfig(base_url="http://x/v1"))
        transcript = await run_conversation(spec, client, target, AssistantPool(client), EngineOptions(timeout=0.3))
        await client.close()
        return transcript

    transcript = run_async(go())
    assert transcript.verdict == "error"
    assert transcript.error == "creating the assistant: the backend did not answer within 0.3 s (--timeout)"


def test_serve_refuses_a_forced_provider_that_cannot_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, ["serve", "--provider", "scripted", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2 and "needs rules" in result.output
    result = CliRunner().invoke(cli, ["serve", "--provider", "openai", "--db", str(tmp_path / "x.db")],
                                env={"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""})
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.output


def test_aliases_that_expand_without_end_are_refused_quickly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\nconversation: [{user: hi}]\n", encoding="utf-8")
    with pytest.raises(SpecInvalid) as info:  # 10^9 values if expanded: refused at the limit instead
        load_spec(path)
    assert "aliases expand the document to more than 100,000 values" in str(info.value)


def test_closing_the_embedded_client_closes_its_backend() -> None:
    from runner.engine.backend import embedded_client
    from runner.server.app import Backend

    async def go() -> Backend:
        backend = Backend()
        client = embedded_client(backend)
        await client.beta.assistants.create(model="echo")
        await client.close()
        return backend

    backend = run_async(go())
    with pytest.raises(Exception, match="closed"):
        backend.store.list("assistant")


def test_stream_must_be_a_boolean() -> None:
    from runner.engine.backend import embedded_client
    from runner.server.app import Backend

    async def go() -> None:
        client = embedded_client(Backend())
        assistant = await client.beta.assistants.create(model="echo", metadata={"a": "b"})
        updated = await client.beta.assistants.update(assistant.id, metadata=None)
        assert updated.metadata == {}
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(Exception, match="Invalid type for 'stream'"):
            await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id,
                                                  extra_body={"stream": "false"})
        await client.close()

    run_async(go())


def test_served_connections_have_nagle_off() -> None:
    """Without TCP_NODELAY every keep-alive response waited ~40 ms (Nagle with delayed ACKs): 120 -> 4 cycles/s."""
    import socket

    from runner.server.serve import listen

    async def go() -> int:
        flags: list[int] = []
        sock = listen("127.0.0.1", 0)

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            flags.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        while not flags:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()
        return flags[0]

    assert run_async(go()) != 0


def test_a_retried_request_never_adds_the_users_message_twice(write_spec) -> None:  # type: ignore[no-untyped-def]
    """The backend acts on a message, the answer is lost on the way back, the SDK retries with the same
    Idempotency-Key: the thread holds the message once, and the conversation goes on."""
    import httpx2
    from openai import AsyncOpenAI

    from runner.engine.asgi import StreamingASGITransport
    from runner.server.app import Backend, create_app

    backend = Backend()
    app = create_app(backend)
    dropped: list[str] = []

    async def loses_the_first_answer(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["method"] == "POST" and scope["path"].endswith("/messages") and not dropped:
            async def nowhere(message):  # type: ignore[no-untyped-def]
                pass

            await app(scope, receive, nowhere)  # the backend acts...
            dropped.append(scope["path"])
            # ...and the client never hears of it, as when a connection drops before the response
            raise httpx2.RemoteProtocolError("Server disconnected without sending a response.")
        await app(scope, receive, send)

    spec = load_spec(write_spec("assistant: {model: echo}\nconversation: [{user: first}, {user: second}]\n"))

    async def go():  # type: ignore[no-untyped-def]
        http = httpx2.AsyncClient(transport=StreamingASGITransport(loses_the_first_answer), base_url="http://x/v1")
        client = AsyncOpenAI(api_key="x", base_url="http://x/v1", http_client=http, max_retries=1)
        transcript = await run_conversation(spec, client, BackendTarget(BackendConfig()), AssistantPool(client),
                                            EngineOptions())
        await client.close()
        return transcript

    transcript = run_async(go())
    assert dropped and transcript.error is None, transcript.error
    assert [t.reply for t in transcript.turns] == ["first", "second"]
    texts = [m["content"][0]["text"]["value"] for m in backend.store.children("message", transcript.thread_id)]
    assert texts == ["first", "first", "second", "second"]  # each user message once, each echoed once


def test_a_repeated_idempotency_key_gets_the_first_answer() -> None:
    from starlette.testclient import TestClient

    from runner.server.app import Backend, create_app

    backend = Backend()
    client = TestClient(create_app(backend))
    thread = client.post("/v1/threads", json={}).json()
    headers = {"Idempotency-Key": "k-1"}
    first = client.post(f"/v1/threads/{thread['id']}/messages", json={"role": "user", "content": "hi"}, headers=headers)
    again = client.post(f"/v1/threads/{thread['id']}/messages", json={"role": "user", "content": "hi"}, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    other = client.post(f"/v1/threads/{thread['id']}/messages", json={"role": "user", "content": "hi"},
                        headers={"Idempotency-Key": "k-2"})
    assert other.json()["id"] != first.json()["id"]
    assert len(backend.store.children("message", thread["id"])) == 2


@pytest.mark.parametrize(("headers", "waits"), [
    ([(b"retry-after", b"3")], [3.0]),  # the backend's wait, to the second
    ([(b"retry-after-ms", b"1500")], [1.5]),
    ([], None),  # no header: exponential back-off with jitter, bounded
])
def test_a_rate_limited_turn_waits_as_told_then_goes_on_once(write_spec, monkeypatch, headers, waits) -> None:  # type: ignore[no-untyped-def]
    """A 429 on a remote backend: the engine waits what retry-after says (else backs off with jitter), retries
    with the same Idempotency-Key, and the conversation goes on with the user's message in the thread once."""
    import anyio
    import httpx2
    from openai import AsyncOpenAI

    from runner.engine.asgi import StreamingASGITransport
    from runner.server.app import Backend, create_app

    backend = Backend()
    app = create_app(backend)
    keys: list[str] = []

    async def limits_the_first_run(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["method"] == "POST" and scope["path"].endswith("/runs"):
            keys.append(dict(scope["headers"]).get(b"idempotency-key", b"").decode())
            if len(keys) == 1:
                body = b'{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}'
                await send({"type": "http.response.start", "status": 429,
                            "headers": [(b"content-type", b"application/json"), *headers]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", sleep)
    spec = load_spec(write_spec("assistant: {model: echo}\nconversation: [{user: first}, {user: second}]\n"))

    async def go():  # type: ignore[no-untyped-def]
        http = httpx2.AsyncClient(transport=StreamingASGITransport(limits_the_first_run), base_url="http://x/v1")
        client = AsyncOpenAI(api_key="x", base_url="http://x/v1", http_client=http, max_retries=2)
        transcript = await run_conversation(spec, client, BackendTarget(BackendConfig(base_url="http://x/v1")),
                                            AssistantPool(client), EngineOptions(keep=True))
        await client.close()
        return transcript

    transcript = run_async(go())
    assert transcript.error is None and [t.reply for t in transcript.turns] == ["first", "second"]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]  # the retry is the same request; turn 2 a new one
    if waits is not None:
        assert slept == waits
    else:
        assert len(slept) == 1 and 0.375 <= slept[0] <= 0.5  # 0.5 s, less up to a quarter of jitter
    texts = [m["content"][0]["text"]["value"] for m in backend.store.children("message", transcript.thread_id)]
    assert texts == ["first", "first", "second", "second"]
