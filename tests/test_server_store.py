"""The backend's SQLite store used directly: objects, private state, cursor pagination, persistence."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from pathlib import Path

import openai
import pytest
from server_helpers import Env, serve, text_of

from runner.server import Backend, BackendSettings
from runner.server import store as store_module
from runner.server.errors import APIError
from runner.server.store import Page, Store


def _msg(i: int, thread: str = "thread_1") -> dict[str, object]:
    return {"id": f"msg_{i}", "object": "thread.message", "thread_id": thread, "n": i}


@pytest.fixture
def store() -> Store:
    s = Store()
    s.insert("thread", {"id": "thread_1", "object": "thread"})
    s.insert("thread", {"id": "thread_2", "object": "thread"})
    for i in range(7):
        s.insert("message", _msg(i), parent="thread_1", run_id="run_a" if i % 2 else None)
    s.insert("message", _msg(100, "thread_2"), parent="thread_2")
    return s


def ids(page: Page) -> list[str]:
    return [o["id"] for o in page.data]


ALL = [f"msg_{i}" for i in range(7)]


def test_insert_get_update_private(store: Store) -> None:
    body = store.get("message", "msg_3")
    assert body == _msg(3)
    assert store.get("message", "msg_3", parent="thread_1") == body
    body["n"] = 33
    assert store.update("message", body) == body
    assert store.get("message", "msg_3")["n"] == 33
    assert store.private("msg_3") == {}
    store.update("message", body, private={"secret": [1, 2]})
    assert store.private("msg_3") == {"secret": [1, 2]}
    body["n"] = 34
    store.update("message", body)  # private state is kept when not given
    assert store.private("msg_3") == {"secret": [1, 2]}
    assert store.private("msg_unknown") == {}
    store.insert("run", {"id": "run_p"}, parent="thread_1", private={"items": []})
    assert store.private("run_p") == {"items": []}


def test_get_errors_are_404(store: Store) -> None:
    for kind, object_id, parent, noun in [
        ("message", "msg_nope", None, "message"),
        ("message", "msg_3", "thread_2", "message"),  # wrong parent
        ("thread", "msg_3", None, "thread"),  # wrong kind
        ("run_step", "step_x", None, "run step"),
    ]:
        with pytest.raises(APIError) as info:
            store.get(kind, object_id, parent=parent)  # type: ignore[arg-type]
        assert info.value.status == 404
        assert info.value.message == f"No {noun} found with id '{object_id}'."
        assert info.value.body() == {"error": {"message": info.value.message, "type": "invalid_request_error",
                                               "param": None, "code": None}}
    with pytest.raises(APIError) as info:
        store.update("message", {"id": "msg_nope"})
    assert info.value.status == 404
    with pytest.raises(APIError) as info:
        store.delete("message", "msg_nope")
    assert info.value.status == 404


def test_duplicate_id_is_rejected(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.insert("message", _msg(1), parent="thread_1")


def test_list_orders_and_filters(store: Store) -> None:
    assert ids(store.list("message", parent="thread_1")) == ALL[::-1]
    assert ids(store.list("message", parent="thread_1", order="asc")) == ALL
    assert ids(store.list("message", parent="thread_1", run_id="run_a", order="asc")) == [
        "msg_1", "msg_3", "msg_5"]
    assert ids(store.list("message", parent="thread_2")) == ["msg_100"]
    assert ids(store.list("message", parent="thread_nope")) == []
    assert len(store.list("message").data) == 8  # no parent: every message
    assert ids(store.list("thread", order="asc")) == ["thread_1", "thread_2"]
    assert [o["id"] for o in store.children("message", "thread_1")] == ALL


def test_page_body_shape(store: Store) -> None:
    body = store.list("message", parent="thread_1", order="asc", limit=2).body()
    assert body == {"object": "list", "data": [_msg(0), _msg(1)], "first_id": "msg_0", "last_id": "msg_1",
                    "has_more": True}
    assert Page([], False).body() == {"object": "list", "data": [], "first_id": None, "last_id": None,
                                      "has_more": False}


@pytest.mark.parametrize("limit", [0, -1, 101, 1000])
def test_limit_bounds(store: Store, limit: int) -> None:
    with pytest.raises(APIError) as info:
        store.list("message", parent="thread_1", limit=limit)
    assert info.value.status == 400 and info.value.param == "limit"


@pytest.mark.parametrize("limit", [1, 100])
def test_limit_edges_are_accepted(store: Store, limit: int) -> None:
    page = store.list("message", parent="thread_1", limit=limit, order="asc")
    assert ids(page) == ALL[:limit] and page.has_more == (limit < 7)


def test_bad_order_is_400(store: Store) -> None:
    with pytest.raises(APIError) as info:
        store.list("message", order="random")
    assert info.value.status == 400 and info.value.param == "order"


@pytest.mark.parametrize("param", ["after", "before"])
def test_unknown_cursor_is_400(store: Store, param: str) -> None:
    with pytest.raises(APIError) as info:
        store.list("message", parent="thread_1", **{param: "msg_nope"})
    assert info.value.status == 400 and info.value.param == param
    assert "msg_nope" in info.value.message
    # an id of another kind is no cursor for this list either
    with pytest.raises(APIError):
        store.list("message", parent="thread_1", **{param: "thread_1"})


def test_after_pagination(store: Store) -> None:
    p = store.list("message", parent="thread_1", order="asc", limit=3)
    assert ids(p) == ALL[:3] and p.has_more
    p = store.list("message", parent="thread_1", order="asc", limit=3, after="msg_2")
    assert ids(p) == ALL[3:6] and p.has_more
    p = store.list("message", parent="thread_1", order="asc", limit=3, after="msg_5")
    assert ids(p) == ["msg_6"] and not p.has_more
    p = store.list("message", parent="thread_1", order="asc", after="msg_6")
    assert ids(p) == [] and not p.has_more
    p = store.list("message", parent="thread_1", order="desc", limit=3, after="msg_4")
    assert ids(p) == ["msg_3", "msg_2", "msg_1"] and p.has_more
    p = store.list("message", parent="thread_1", order="desc", limit=3, after="msg_2")
    assert ids(p) == ["msg_1", "msg_0"] and not p.has_more
    p = store.list("message", parent="thread_1", order="asc", limit=7)
    assert ids(p) == ALL and not p.has_more


def test_before_pagination_asc_and_desc(store: Store) -> None:
    # before + asc: the items just before the cursor, still ascending
    p = store.list("message", parent="thread_1", order="asc", limit=2, before="msg_5")
    assert ids(p) == ["msg_3", "msg_4"] and p.has_more
    p = store.list("message", parent="thread_1", order="asc", limit=5, before="msg_5")
    assert ids(p) == ALL[:5] and not p.has_more
    p = store.list("message", parent="thread_1", order="asc", limit=2, before="msg_0")
    assert ids(p) == [] and not p.has_more
    p = store.list("message", parent="thread_1", order="asc", limit=2, before="msg_2")
    assert ids(p) == ["msg_0", "msg_1"] and not p.has_more
    # before + desc: the items just before the cursor in descending order (the newer ones), descending
    p = store.list("message", parent="thread_1", order="desc", limit=2, before="msg_2")
    assert ids(p) == ["msg_4", "msg_3"] and p.has_more
    p = store.list("message", parent="thread_1", order="desc", limit=10, before="msg_2")
    assert ids(p) == ["msg_6", "msg_5", "msg_4", "msg_3"] and not p.has_more
    p = store.list("message", parent="thread_1", order="desc", before="msg_6")
    assert ids(p) == [] and not p.has_more


def test_before_and_after_together(store: Store) -> None:
    p = store.list("message", parent="thread_1", order="asc", after="msg_1", before="msg_5")
    assert ids(p) == ["msg_2", "msg_3", "msg_4"] and not p.has_more
    p = store.list("message", parent="thread_1", order="asc", limit=2, after="msg_1", before="msg_5")
    assert ids(p) == ["msg_2", "msg_3"] and p.has_more
    p = store.list("message", parent="thread_1", order="desc", after="msg_5", before="msg_1")
    assert ids(p) == ["msg_4", "msg_3", "msg_2"]


def test_walking_all_pages_both_ways(store: Store) -> None:
    for order, expected in (("asc", ALL), ("desc", ALL[::-1])):
        seen: list[str] = []
        after = None
        while True:
            p = store.list("message", parent="thread_1", order=order, limit=2, after=after)
            seen += ids(p)
            if not p.has_more:
                break
            after = p.data[-1]["id"]
        assert seen == expected
        # and back again with `before` from the end
        back: list[str] = []
        before = expected[-1]
        back = [before]
        while True:
            p = store.list("message", parent="thread_1", order=order, limit=2, before=before)
            back = ids(p) + back
            if not p.has_more:
                break
            before = p.data[0]["id"]
        assert back == expected


def test_delete_thread_cascades(store: Store) -> None:
    store.insert("run", {"id": "run_a"}, parent="thread_1")
    store.insert("run_step", {"id": "step_a"}, parent="thread_1", run_id="run_a")
    store.delete("thread", "thread_1")
    for kind, object_id in [("thread", "thread_1"), ("message", "msg_0"), ("run", "run_a"),
                            ("run_step", "step_a")]:
        with pytest.raises(APIError):
            store.get(kind, object_id)  # type: ignore[arg-type]
    assert store.children("message", "thread_1") == []
    assert ids(store.list("message")) == ["msg_100"]
    assert store.get("thread", "thread_2")["id"] == "thread_2"
    # deleting a message touches nothing else
    store.delete("message", "msg_100")
    assert store.get("thread", "thread_2")["id"] == "thread_2"
    assert store.list("message").data == []


def test_file_backed_store_keeps_data_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "backend.db")
    s = Store(path)
    s.insert("thread", {"id": "thread_f", "object": "thread"})
    s.insert("message", _msg(1, "thread_f"), parent="thread_f", private={"p": 1})
    s.insert("message", _msg(2, "thread_f"), parent="thread_f")
    body = s.get("message", "msg_2")
    body["n"] = 22
    s.update("message", body)
    s.close()

    s = Store(path)
    try:
        assert s.get("thread", "thread_f") == {"id": "thread_f", "object": "thread"}
        assert s.get("message", "msg_2", parent="thread_f")["n"] == 22
        assert s.private("msg_1") == {"p": 1}
        assert ids(s.list("message", parent="thread_f", order="asc")) == ["msg_1", "msg_2"]
        # new objects still sort after the old ones
        s.insert("message", _msg(3, "thread_f"), parent="thread_f")
        assert ids(s.list("message", parent="thread_f", order="asc", after="msg_2")) == ["msg_3"]
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        s.close()


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]


def test_a_file_store_checkpoints_its_wal_off_the_writing_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints (the copy of the WAL into the database, with its fsyncs) run in the store's own thread, so a
    commit on the event loop never waits for one; the loop's autocheckpoint is only a far-off bound."""
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY", 0.01)
    path = tmp_path / "backend.db"
    s = Store(str(path))
    try:
        assert s._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == store_module.BACKSTOP_PAGES
        before = path.stat().st_size
        for i in range(50):  # ~50 pages: far below the backstop, so only the thread can have copied them
            s.insert("message", {**_msg(i), "text": "x" * 4000}, parent="thread_1")
        deadline = time.monotonic() + 10
        while path.stat().st_size < before + 50 * 4000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size >= before + 50 * 4000
        assert len(_checkpoint_threads()) == 1
    finally:
        s.close()
    assert _checkpoint_threads() == []  # close() ends the thread before closing the database
    assert Store()._checkpointer is None  # nothing to checkpoint in memory


def test_a_file_store_dropped_without_close_ends_its_checkpoint_thread(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "backend.db"))
    s.insert("thread", {"id": "thread_d", "object": "thread"})
    thread = _checkpoint_threads()[0]
    del s
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_file_backed_backend_survives_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "backend.db")

    async def first(env: Env) -> tuple[str, str, str]:
        a = await env.assistant(name="persistent")
        t = await env.thread("remember me")
        run = await env.client.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert run.status == "completed"
        return a.id, t.id, run.id

    backend = Backend(BackendSettings(db_path=path))
    asst_id, thread_id, run_id = serve(first, backend=backend)
    backend.store.close()

    async def second(env: Env) -> None:
        c = env.client
        assert (await c.beta.assistants.retrieve(asst_id)).name == "persistent"
        assert await env.texts(thread_id) == [("user", "remember me"), ("assistant", "remember me")]
        assert (await c.beta.threads.runs.retrieve(run_id, thread_id=thread_id)).status == "completed"
        # the thread is free: the finished run released it before the restart
        await c.beta.threads.messages.create(thread_id, role="user", content="again")
        run = await c.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=asst_id)
        assert run.status == "completed"
        assert text_of((await env.messages(thread_id))[0]) == "again"

    backend = Backend(BackendSettings(db_path=path))
    try:
        serve(second, backend=backend)
    finally:
        backend.store.close()


def test_waiting_run_survives_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "backend.db")
    rules = [{"user": r"weather in (\w+)", "call": {"name": "get_weather", "arguments": {"city": r"\1"}}},
             {"tool_output": r"(\d+)", "reply": r"It is \1 degrees."}]

    async def first(env: Env) -> tuple[str, str, str]:
        a = await env.assistant("scripted")
        t = await env.thread("weather in Oslo")
        run = await env.client.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert run.status == "requires_action"
        return t.id, run.id, run.required_action.submit_tool_outputs.tool_calls[0].id  # type: ignore[union-attr]

    backend = Backend(BackendSettings(db_path=path, rules=rules))
    thread_id, run_id, call_id = serve(first, backend=backend)
    backend.store.close()

    async def second(env: Env) -> None:
        c = env.client
        with pytest.raises(openai.BadRequestError):  # still waiting, so still holding the thread
            await c.beta.threads.messages.create(thread_id, role="user", content="x")
        run = await c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run_id, thread_id=thread_id, tool_outputs=[{"tool_call_id": call_id, "output": "4"}])
        assert run.status == "completed"
        assert text_of((await env.messages(thread_id))[0]) == "It is 4 degrees."

    backend = Backend(BackendSettings(db_path=path, rules=rules))
    try:
        serve(second, backend=backend)
    finally:
        backend.store.close()


def test_runs_in_flight_when_the_process_died_are_failed_on_restart(tmp_path: Path) -> None:
    """A restart finds runs a dead process left executing: they fail; runs waiting for tool outputs resume."""
    import asyncio as aio

    from runner.server import objects
    from runner.server.app import Backend, BackendSettings

    db = str(tmp_path / "crash.sqlite3")
    first = Backend(BackendSettings(db_path=db))
    asst = first.store.insert("assistant", objects.assistant({"model": "echo"}))
    thread = first.store.insert("thread", objects.thread({}))
    stranded = objects.run(thread["id"], asst, {})
    stranded["status"] = "in_progress"
    first.store.insert("run", stranded, parent=thread["id"])
    first.store.update("thread", thread, private={"active_run": stranded["id"]})
    waiting = objects.run(thread["id"], asst, {})
    waiting["status"] = "requires_action"
    first.store.insert("run", waiting, parent=thread["id"])
    # no shutdown: the process "died" here
    second = Backend(BackendSettings(db_path=db))
    assert second.recovered == 1
    run = second.store.get("run", stranded["id"])
    assert run["status"] == "failed" and run["failed_at"] is not None
    assert "stopped while this run was executing" in run["last_error"]["message"]
    assert second.store.get("run", waiting["id"])["status"] == "requires_action"
    assert second.store.private(thread["id"]).get("active_run") is None
    aio.run(second.executor.shutdown())
