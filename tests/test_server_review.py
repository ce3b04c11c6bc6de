"""Review findings on the built-in backend: streams that always end, no lost updates, atomic state changes,
malformed requests as 400s, no half-written data, one server per database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest
from server_helpers import Env, check, drain, error_json, names, serve

from runner.server import objects
from runner.server.app import Backend, BackendSettings
from runner.server.errors import APIError
from runner.server.executor import RunExecutor
from runner.server.providers import ModelReply, ProviderSet
from runner.server.store import Store


class _Slow:
    """A model that answers only once released, so a run can be caught while in progress."""

    name = "slow"

    def __init__(self, text: str = "slow answer") -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.text = text

    async def respond(self, request: Any) -> ModelReply:
        self.started.set()
        await self.release.wait()
        return ModelReply(text=self.text, prompt_tokens=1, completion_tokens=2)


def _slow(env: Env) -> _Slow:
    slow = _Slow()
    env.backend.providers.providers["openai"] = slow  # type: ignore[assignment]  # "slow" routes to the default live provider
    return slow


def _rows(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return store._db.execute(sql, args).fetchall()


# -- store ----------------------------------------------------------------------------------------

def test_a_transaction_writes_everything_or_nothing() -> None:
    s = Store()
    s.insert("thread", {"id": "thread_1", "object": "thread"})
    with pytest.raises(RuntimeError), s.transaction():
        s.insert("message", {"id": "msg_1"}, parent="thread_1")
        s.update("thread", {"id": "thread_1", "object": "thread", "changed": True})
        with s.transaction():  # an inner transaction joins the outer one
            s.insert("message", {"id": "msg_2"}, parent="thread_1")
        raise RuntimeError("crash")
    assert s.children("message", "thread_1") == []
    assert s.get("thread", "thread_1") == {"id": "thread_1", "object": "thread"}
    with s.transaction():
        s.insert("message", {"id": "msg_3"}, parent="thread_1")
    assert [m["id"] for m in s.children("message", "thread_1")] == ["msg_3"]
    assert not s._db.in_transaction


def test_thread_delete_is_one_transaction() -> None:
    s = Store()
    s.insert("thread", {"id": "thread_1", "object": "thread"})
    s.insert("message", {"id": "msg_1"}, parent="thread_1")
    # the second statement of the delete fails: the first must not stand alone
    s._db.execute("CREATE TRIGGER no_children BEFORE DELETE ON objects WHEN old.kind = 'message' "
                  "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    with pytest.raises(sqlite3.DatabaseError):
        s.delete("thread", "thread_1")
    assert s.get("thread", "thread_1")["id"] == "thread_1"
    assert s.get("message", "msg_1")["id"] == "msg_1"


def test_parent_and_run_lookups_use_an_index() -> None:
    s = Store()
    for sql in ("DELETE FROM objects WHERE parent = ?", "SELECT body FROM objects WHERE run_id = ? AND kind = ?"):
        plan = " ".join(str(row[-1]) for row in _rows(s, "EXPLAIN QUERY PLAN " + sql, *(["x"] * sql.count("?"))))
        assert "USING INDEX" in plan and "SCAN objects" not in plan, (sql, plan)


def test_set_private_changes_only_the_private_state() -> None:
    s = Store()
    s.insert("thread", {"id": "thread_1", "object": "thread", "metadata": {}})
    s.update("thread", {"id": "thread_1", "object": "thread", "metadata": {"k": "v"}})
    s.set_private("thread", "thread_1", {"active_run": "run_1"})
    assert s.private("thread_1") == {"active_run": "run_1"}
    assert s.get("thread", "thread_1")["metadata"] == {"k": "v"}
    s.set_private("thread", "thread_1", {})
    assert s.private("thread_1") == {}
    with pytest.raises(APIError) as info:
        s.set_private("thread", "thread_nope", {})
    assert info.value.status == 404 and "thread_nope" in info.value.message


# -- executor -------------------------------------------------------------------------------------

def test_deleting_the_thread_ends_a_streaming_run() -> None:
    async def body(env: Env) -> None:
        c = env.client
        slow = _slow(env)
        a = await env.assistant()
        t = await env.thread("hi")
        streaming = asyncio.create_task(c.beta.threads.runs.create(t.id, assistant_id=a.id, model="slow", stream=True))
        await asyncio.wait_for(slow.started.wait(), 5)
        await c.beta.threads.delete(t.id)
        events = await drain(await asyncio.wait_for(streaming, 5))
        assert names(events) == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
        assert env.backend.executor._listeners == {}
        await env.settle()

    serve(body)


def test_a_run_stopped_before_it_began_still_ends_its_stream() -> None:
    async def main() -> None:
        b = Backend()
        asst = b.store.insert("assistant", objects.assistant({"model": "echo"}))
        thread = b.store.insert("thread", objects.thread({}))
        run = b.store.insert("run", objects.run(thread["id"], asst, {}), parent=thread["id"])
        queue = b.executor.listen(run["id"])
        b.executor.start(run, created=True)
        b.executor.stop(run["id"])  # what deleting the thread does, before the task ran at all
        b.store.delete("thread", thread["id"])
        seen = []
        while (item := await asyncio.wait_for(queue.get(), 5)) is not None:
            seen.append(item[0])
        assert seen == ["thread.run.created", "thread.run.queued"]
        await b.executor.shutdown()
        b.store.close()

    asyncio.run(main())


def test_metadata_updated_during_a_run_is_kept() -> None:
    async def body(env: Env) -> None:
        c = env.client
        slow = _slow(env)
        a = await env.assistant()
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create(t.id, assistant_id=a.id, model="slow")
        await asyncio.wait_for(slow.started.wait(), 5)
        updated = await c.beta.threads.runs.update(run.id, thread_id=t.id, metadata={"ticket": "42"})
        assert updated.status == "in_progress" and updated.metadata == {"ticket": "42"}
        slow.release.set()
        await env.settle()
        final = check(await c.beta.threads.runs.retrieve(run.id, thread_id=t.id))
        assert final.status == "completed" and final.metadata == {"ticket": "42"}

    serve(body)


def test_an_update_whose_body_arrives_late_does_not_undo_the_run() -> None:
    """The update request reads its run only once its body is in: the run may finish while it arrives."""

    async def body(env: Env) -> None:
        c = env.client
        slow = _slow(env)
        a = await env.assistant()
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create(t.id, assistant_id=a.id, model="slow")
        await asyncio.wait_for(slow.started.wait(), 5)
        sent_first_byte = asyncio.Event()

        async def late_body() -> Any:
            yield b'{"metadata": '
            sent_first_byte.set()
            await env.settle()  # the run completes while the request body is still on its way
            yield b'{"k": "v"}}'

        http = c._client  # the SDK's own httpx client, reaching the app in-process
        request = asyncio.create_task(http.post(f"/threads/{t.id}/runs/{run.id}", content=late_body(),
                                                headers={"content-type": "application/json"}))
        await sent_first_byte.wait()
        slow.release.set()
        response = await asyncio.wait_for(request, 5)
        assert response.status_code == 200
        assert response.json()["status"] == "completed"
        final = await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)
        assert final.status == "completed" and final.metadata == {"k": "v"}

    serve(body)


def test_a_finished_execution_does_not_forget_the_one_that_replaced_it() -> None:
    async def main() -> None:
        executor = RunExecutor(Store(), ProviderSet())
        loop = asyncio.get_running_loop()
        old = loop.create_task(asyncio.sleep(0))
        new = loop.create_task(asyncio.sleep(10))
        await old
        executor._tasks["run_1"] = new  # the run resumed (tool outputs) before the old callback ran
        executor._on_done("run_1", old)
        assert executor._tasks == {"run_1": new}
        new.cancel()
        executor._on_done("run_1", new)
        assert executor._tasks == {}

    asyncio.run(main())


def test_a_crash_mid_completion_leaves_no_half_written_message() -> None:
    async def body(env: Env) -> None:
        c = env.client
        store = env.backend.store
        real_update = store.update

        def crashing_update(kind: Any, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
            if kind == "message" and obj.get("status") == "completed" and obj.get("role") == "assistant":
                raise RuntimeError("disk trouble")
            return real_update(kind, obj, **kw)

        store.update = crashing_update  # type: ignore[method-assign]
        a = await env.assistant()
        t = await env.thread("hi")
        stream = await c.beta.threads.runs.create(t.id, assistant_id=a.id, stream=True)
        events = await drain(stream)
        await env.settle()
        # the change that crashed was rolled back and never announced; the run failed instead
        assert names(events) == ["thread.run.created", "thread.run.queued", "thread.run.in_progress",
                                 "thread.run.failed"]
        assert "disk trouble" in events[-1].data.last_error.message
        assert await env.texts(t.id) == [("user", "hi")]
        assert _rows(store, "SELECT kind FROM objects WHERE run_id IS NOT NULL") == []

    serve(body)


def test_recover_ends_the_steps_and_messages_of_the_runs_it_ends(tmp_path: Path) -> None:
    db = str(tmp_path / "crash.sqlite3")
    first = Backend(BackendSettings(db_path=db))
    s = first.store
    asst = s.insert("assistant", objects.assistant({"model": "echo"}))
    stranded: dict[str, dict[str, Any]] = {}
    for status in ("in_progress", "cancelling"):
        thread = s.insert("thread", objects.thread({}))
        run = objects.run(thread["id"], asst, {})
        run["status"] = status
        s.insert("run", run, parent=thread["id"])
        msg = objects.message(thread["id"], "assistant", [], run_id=run["id"], assistant_id=asst["id"],
                              status="in_progress")
        step = objects.run_step(run, {"type": "message_creation", "message_creation": {"message_id": msg["id"]}})
        s.insert("run_step", step, parent=thread["id"], run_id=run["id"])
        s.insert("message", msg, parent=thread["id"], run_id=run["id"])
        stranded[status] = {"run": run, "step": step, "message": msg}
    s.close()  # the process "died" here

    second = Backend(BackendSettings(db_path=db))
    try:
        assert second.recovered == 2
        failed = stranded["in_progress"]
        step = second.store.get("run_step", failed["step"]["id"])
        assert step["status"] == "failed" and step["failed_at"] is not None
        assert step["last_error"]["code"] == "server_error"
        msg = second.store.get("message", failed["message"]["id"])
        assert msg["status"] == "incomplete" and msg["incomplete_at"] is not None
        assert msg["incomplete_details"] == {"reason": "run_failed"}
        cancelled = stranded["cancelling"]
        assert second.store.get("run", cancelled["run"]["id"])["status"] == "cancelled"
        step = second.store.get("run_step", cancelled["step"]["id"])
        assert step["status"] == "cancelled" and step["cancelled_at"] is not None
        msg = second.store.get("message", cancelled["message"]["id"])
        assert msg["status"] == "incomplete" and msg["incomplete_details"] == {"reason": "run_cancelled"}
        from openai.types.beta.threads.message import Message
        from openai.types.beta.threads.runs.run_step import RunStep
        for kind, model in (("run_step", RunStep), ("message", Message)):
            for row in _rows(second.store, "SELECT body FROM objects WHERE kind = ?", kind):
                model.model_validate(json.loads(row[0]))
    finally:
        second.store.close()


# -- malformed requests ---------------------------------------------------------------------------

_SDK_TYPES: dict[str, Any] = {}


def _sdk_type(kind: str) -> Any:
    if not _SDK_TYPES:
        from openai.types.beta import Assistant, Thread
        from openai.types.beta.threads import Message, Run
        from openai.types.beta.threads.runs import RunStep
        _SDK_TYPES.update(assistant=Assistant, thread=Thread, message=Message, run=Run, run_step=RunStep)
    return _SDK_TYPES[kind]


def _all_valid(store: Store) -> int:
    """Check every stored object against its SDK type; how many there are."""
    rows = _rows(store, "SELECT kind, body FROM objects")
    for kind, body in rows:
        _sdk_type(kind).model_validate(json.loads(body))
    return len(rows)


async def _bad(env: Env, path: str, body: Any) -> str | None:
    """POST a request the backend must refuse with a 400 in the official shape; the param it names."""
    with pytest.raises(openai.BadRequestError) as info:
        await env.client.post(path, body=body, cast_to=object)
    return error_json(info.value)["param"]


def test_malformed_requests_are_400s_naming_the_parameter() -> None:
    async def body(env: Env) -> None:
        a = (await env.assistant()).id
        scripted = (await env.scripted()).id
        t = (await env.thread("hi")).id
        waiting = await env.thread("weather in Oslo")
        run = await env.client.beta.threads.runs.create_and_poll(thread_id=waiting.id, assistant_id=scripted)
        assert run.status == "requires_action" and run.required_action is not None
        call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
        submit = f"/threads/{waiting.id}/runs/{run.id}/submit_tool_outputs"
        bad_schema = {"type": "json_schema", "json_schema": {"name": 5}}
        cases: list[tuple[str, Any, str]] = [
            ("/assistants", {"model": "echo", "temperature": "hot"}, "temperature"),
            ("/assistants", {"model": "echo", "response_format": bad_schema}, "response_format.json_schema.name"),
            ("/assistants", {"model": "echo", "tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
             "tools[0].function.parameters"),
            (f"/assistants/{a}", {"model": None}, "model"),
            (f"/assistants/{a}", {"tools": None}, "tools"),
            (f"/assistants/{a}", {"name": 123}, "name"),
            (f"/assistants/{a}", {"temperature": "hot"}, "temperature"),
            (f"/assistants/{a}", {"response_format": "weird"}, "response_format"),
            ("/threads", {"tool_resources": {"code_interpreter": {"file_ids": "x"}}}, "tool_resources.code_interpreter.file_ids"),
            ("/threads", {"messages": [{"role": "user", "content": "x", "attachments": "x"}]}, "messages[0].attachments"),
            ("/threads", {"messages": [{"role": "user"}]}, "messages[0].content"),
            (f"/threads/{t}", {"tool_resources": {"file_search": {"vector_store_ids": 5}}},
             "tool_resources.file_search.vector_store_ids"),
            (f"/threads/{t}/messages", {"role": "system", "content": "x"}, "role"),
            (f"/threads/{t}/messages", {"content": "x"}, "role"),
            (f"/threads/{t}/messages", {"role": "user"}, "content"),
            (f"/threads/{t}/messages", {"role": "user", "content": "x", "attachments": [{"file_id": 5}]},
             "attachments[0].file_id"),
            (f"/threads/{t}/messages", {"role": "user", "content": "x", "metadata": {"k": 5}}, "metadata"),
            (f"/threads/{t}/runs", {"assistant_id": a, "instructions": 5}, "instructions"),
            (f"/threads/{t}/runs", {"assistant_id": a, "additional_instructions": 5}, "additional_instructions"),
            (f"/threads/{t}/runs", {"assistant_id": a, "model": 5}, "model"),
            (f"/threads/{t}/runs", {"assistant_id": a, "temperature": "x"}, "temperature"),
            (f"/threads/{t}/runs", {"assistant_id": a, "response_format": bad_schema}, "response_format.json_schema.name"),
            (f"/threads/{t}/runs", {"assistant_id": a, "additional_messages": [{"role": "user", "content": 5}]},
             "additional_messages[0].content"),
            ("/threads/runs", {"assistant_id": a, "thread": {"metadata": {"k": 5}}}, "thread.metadata"),
            ("/threads/runs", {"assistant_id": a, "thread": {"messages": [{"role": "system", "content": "x"}]}},
             "thread.messages[0].role"),
            ("/threads/runs", {"assistant_id": a, "thread": {"tool_resources": {"code_interpreter": {"file_ids": 1}}}},
             "thread.tool_resources.code_interpreter.file_ids"),
            (submit, {"tool_outputs": ["oops"]}, "tool_outputs[0]"),
            (submit, {"tool_outputs": [{"tool_call_id": 5, "output": "1"}]}, "tool_outputs[0].tool_call_id"),
            (submit, {"tool_outputs": [{"tool_call_id": call_id, "output": {"x": 1}}]}, "tool_outputs[0].output"),
            (submit, {"tool_outputs": [{"tool_call_id": call_id, "extra": 1}]}, "tool_outputs[0].extra"),
        ]
        for path, request, param in cases:
            assert await _bad(env, path, request) == param, (path, request)
        # nothing half-written, nothing stored that its SDK type refuses
        assert _all_valid(env.backend.store) == 8  # 2 assistants, 2 threads, 2 messages, 1 run, 1 step
        assert (await env.client.beta.threads.runs.retrieve(run.id, thread_id=waiting.id)).status == "requires_action"

    serve(body)


def test_updates_keep_every_stored_object_valid() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        msg = (await env.messages(t.id))[0]
        updated = check(await c.beta.assistants.update(a.id, temperature=1, name="n", tools=[], model="echo",
                                                       response_format={"type": "json_object"}))
        assert updated.temperature == 1.0 and updated.name == "n"
        check(await c.beta.threads.update(t.id, metadata={"k": "v"}))
        check(await c.beta.threads.messages.update(msg.id, thread_id=t.id, metadata={"k": "v"}))
        check(await c.beta.threads.runs.update(run.id, thread_id=t.id, metadata={"k": "v"}))
        assert await _bad(env, f"/threads/{t.id}/messages/{msg.id}", {"metadata": "x"}) == "metadata"
        assert _all_valid(env.backend.store) == 6
        assert (await c.beta.assistants.retrieve(a.id)).response_format.type == "json_object"  # type: ignore[union-attr]

    serve(body)


def test_a_refused_run_writes_nothing() -> None:
    async def body(env: Env) -> None:
        store = env.backend.store
        a = await env.assistant()
        t = await env.thread("hi")
        before = _rows(store, "SELECT id FROM objects ORDER BY seq")
        left_behind = {"role": "user", "content": "left behind"}
        assert await _bad(env, f"/threads/{t.id}/runs",
                          {"assistant_id": a.id, "temperature": "x", "additional_messages": [left_behind]}) == "temperature"
        assert await _bad(env, f"/threads/{t.id}/runs",
                          {"assistant_id": a.id, "additional_messages": [left_behind, {"role": "nobody"}]}
                          ) == "additional_messages[1].role"
        nope = {"type": "function", "function": {"name": "nope"}}
        assert await _bad(env, "/threads/runs", {"assistant_id": a.id, "tool_choice": nope,
                                                 "thread": {"messages": [{"role": "user", "content": "orphan"}]}}
                          ) == "tool_choice.function.name"
        assert await _bad(env, "/threads/runs", {"assistant_id": a.id, "instructions": 5,
                                                 "thread": {"messages": [{"role": "user", "content": "orphan"}]}}
                          ) == "instructions"
        assert _rows(store, "SELECT id FROM objects ORDER BY seq") == before
        assert store.private(t.id) == {}

    serve(body)


def test_create_message_answers_with_the_message_it_inserted() -> None:
    async def body(env: Env) -> None:
        t = await env.thread()

        def no_listing(*args: Any, **kw: Any) -> Any:
            raise AssertionError("create_message must not re-list the thread")

        env.backend.store.list = no_listing  # type: ignore[method-assign]
        msg = check(await env.client.beta.threads.messages.create(t.id, role="user", content="hello"))
        assert msg.content[0].text.value == "hello"  # type: ignore[union-attr]
        assert env.backend.store.get("message", msg.id, parent=t.id)["id"] == msg.id

    serve(body)


def test_run_bookkeeping_never_rewrites_the_thread_body() -> None:
    async def body(env: Env) -> None:
        c = env.client
        store = env.backend.store
        real_update = store.update
        kinds: list[str] = []

        def spy(kind: Any, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
            kinds.append(kind)
            return real_update(kind, obj, **kw)

        store.update = spy  # type: ignore[method-assign]
        a = await env.assistant()
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert run.status == "completed"
        assert "run" in kinds and "thread" not in kinds
        assert store.private(t.id) == {}

    serve(body)


# -- shutdown -------------------------------------------------------------------------------------

def _live_backend() -> Backend:
    from runner.server.providers import LiveSettings

    live = LiveSettings.from_env({"RUNNER_CHAT_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-test"})
    return Backend(BackendSettings(live=live))


def test_aclose_cancels_runs_and_closes_the_providers_clients_and_the_store() -> None:
    async def main() -> None:
        b = _live_backend()
        chat = b.providers.providers["chat"]
        client = chat._get_client()  # type: ignore[attr-defined]  # created as on the first model call
        assert b.providers.providers["openai"]._client is None  # type: ignore[attr-defined]  # never used: nothing to close
        asst = b.store.insert("assistant", objects.assistant({"model": "echo"}))
        thread = b.store.insert("thread", objects.thread({}))
        run = b.store.insert("run", objects.run(thread["id"], asst, {}), parent=thread["id"])
        b.executor.start(run, created=True)
        status_at_close: list[str] = []
        real_close = b.store.close
        b.store.close = lambda: (status_at_close.append(b.store.get("run", run["id"])["status"]),  # type: ignore[method-assign]
                                 real_close())[1]
        await b.aclose()
        assert status_at_close == ["cancelled"]
        assert client.is_closed()
        with pytest.raises(sqlite3.ProgrammingError):
            b.store.get("run", run["id"])
        await b.aclose()  # a second close is harmless

    asyncio.run(main())


def test_the_apps_shutdown_closes_the_backend() -> None:
    from runner.server.app import create_app

    async def main() -> None:
        b = _live_backend()
        client = b.providers.providers["chat"]._get_client()  # type: ignore[attr-defined]
        app = create_app(b)
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, str]:
            return incoming.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert client.is_closed()
        with pytest.raises(sqlite3.ProgrammingError):
            b.store.private("x")

    asyncio.run(main())


# -- runner serve ---------------------------------------------------------------------------------

def _stranded_run(db: str) -> str:
    """A database holding a run that looks in flight (queued), as a live server's would; its id."""
    b = Backend(BackendSettings(db_path=db))
    asst = b.store.insert("assistant", objects.assistant({"model": "echo"}))
    thread = b.store.insert("thread", objects.thread({}))
    run = b.store.insert("run", objects.run(thread["id"], asst, {}), parent=thread["id"])
    b.store.close()
    return str(run["id"])


def _status(db: str, run_id: str) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT json_extract(body, '$.status') FROM objects WHERE id = ?", (run_id,)).fetchone()
    return str(row[0])


def test_a_second_server_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    from serve_process import clean_env, serving

    db = str(tmp_path / "backend.sqlite3")
    with serving(tmp_path) as server:
        # the first server's live run (written beside it: echo runs finish too fast to catch)
        run_id = _stranded_run(db)
        second = subprocess.run([sys.executable, "-m", "runner", "serve", "--port", "0", "--db", db],
                                env=clean_env(), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert "another runner serve is using the database" in second.stderr
        assert "Traceback" not in second.stderr
        assert _status(db, run_id) == "queued"  # not failed as stranded
        with urllib.request.urlopen(server.url + "/assistants", timeout=10) as response:
            assert response.status == 200  # the first one serves on
    # once the first has stopped, the database is free again
    with serving(tmp_path) as server:
        log = server.stop()
    assert "marked 1 run(s) failed" in log


def test_a_busy_port_is_a_usage_error_and_changes_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from runner.cli import cli

    db = str(tmp_path / "backend.sqlite3")
    run_id = _stranded_run(db)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--db", db])
    assert result.exit_code == 2, result.output
    assert f"port {port} is in use" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert _status(db, run_id) == "queued"  # the port is taken before the stranded runs are failed


def test_a_database_that_cannot_be_opened_is_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from runner.cli import cli

    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are my notes, not a database\n" * 200, encoding="utf-8")
    for db, says in [(tmp_path / "missing" / "x.sqlite3", "does not exist"),
                     (not_a_db, "file is not a database")]:
        result = CliRunner().invoke(cli, ["serve", "--port", "0", "--db", str(db)])
        assert result.exit_code == 2, (db, result.output)
        assert f"cannot open --db {db}" in result.output and says in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not_a_db.read_text(encoding="utf-8").startswith("these are my notes")

