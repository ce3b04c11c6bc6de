"""The built-in backend's object endpoints (assistants, threads, messages) through the official SDK."""

from __future__ import annotations

import openai
import pytest
from openai.types.beta.assistant import Assistant
from openai.types.beta.assistant_deleted import AssistantDeleted
from openai.types.beta.thread import Thread
from openai.types.beta.thread_deleted import ThreadDeleted
from openai.types.beta.threads.message import Message
from openai.types.beta.threads.message_deleted import MessageDeleted
from server_helpers import WEATHER_TOOL, Env, check, error_json, serve, text_of

# -- assistants -----------------------------------------------------------------------------------

def test_assistant_create_retrieve_update_list_delete() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant("echo", name="Echo", description="repeats", instructions="Be brief.",
                                tools=[WEATHER_TOOL], metadata={"team": "qa"}, temperature=0.5)
        assert a.id.startswith("asst_") and len(a.id) > len("asst_")
        assert a.object == "assistant" and a.model == "echo" and a.name == "Echo"
        assert a.description == "repeats" and a.instructions == "Be brief."
        assert a.metadata == {"team": "qa"} and a.temperature == 0.5
        assert [t.function.name for t in a.tools] == ["get_weather"]
        assert isinstance(a.created_at, int)

        got = check(await c.beta.assistants.retrieve(a.id))
        assert got == a

        raw = await c.beta.assistants.with_raw_response.retrieve(a.id)
        assert raw.http_response.status_code == 200
        assert Assistant.model_validate(raw.http_response.json()) == a

        upd = check(await c.beta.assistants.update(a.id, name="Echo 2", metadata={"team": "dev"},
                                                   instructions="Be verbose."))
        assert upd.id == a.id and upd.name == "Echo 2" and upd.metadata == {"team": "dev"}
        assert upd.instructions == "Be verbose." and upd.description == "repeats"
        assert check(await c.beta.assistants.retrieve(a.id)) == upd

        b = await env.assistant("echo", name="Other")
        page = await c.beta.assistants.list()
        assert [check(x).id for x in page.data] == [b.id, a.id]  # newest first by default
        page = await c.beta.assistants.list(order="asc")
        assert [x.id for x in page.data] == [a.id, b.id]

        deleted = check(await c.beta.assistants.delete(a.id))
        assert isinstance(deleted, AssistantDeleted)
        assert deleted.id == a.id and deleted.deleted is True and deleted.object == "assistant.deleted"
        assert [x.id for x in (await c.beta.assistants.list()).data] == [b.id]
        with pytest.raises(openai.NotFoundError):
            await c.beta.assistants.retrieve(a.id)
        with pytest.raises(openai.NotFoundError):
            await c.beta.assistants.delete(a.id)

    serve(body)


def test_assistant_defaults() -> None:
    async def body(env: Env) -> None:
        a = await env.assistant()
        assert a.name is None and a.description is None and a.instructions is None
        assert a.tools == [] and a.metadata == {}
        raw = (await env.client.beta.assistants.with_raw_response.retrieve(a.id)).http_response.json()
        assert raw["object"] == "assistant" and raw["model"] == "echo"

    serve(body)


def test_unknown_ids_are_404_in_the_official_shape() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("hi")
        cases = [
            c.beta.assistants.retrieve("asst_nope"),
            c.beta.assistants.update("asst_nope", name="x"),
            c.beta.threads.retrieve("thread_nope"),
            c.beta.threads.update("thread_nope", metadata={}),
            c.beta.threads.delete("thread_nope"),
            c.beta.threads.messages.create("thread_nope", role="user", content="x"),
            c.beta.threads.messages.list("thread_nope"),
            c.beta.threads.messages.retrieve("msg_nope", thread_id=t.id),
            c.beta.threads.runs.create("thread_nope", assistant_id=a.id),
            c.beta.threads.runs.create(t.id, assistant_id="asst_nope"),
            c.beta.threads.runs.retrieve("run_nope", thread_id=t.id),
            c.beta.threads.runs.cancel("run_nope", thread_id=t.id),
            c.beta.threads.runs.list("thread_nope"),
            c.beta.threads.runs.steps.list("run_nope", thread_id=t.id),
        ]
        for call in cases:
            with pytest.raises(openai.NotFoundError) as info:
                await call
            err = info.value
            assert err.status_code == 404
            body_ = error_json(err)
            assert body_["type"] == "invalid_request_error"
            assert "nope" in body_["message"] and body_["message"] == err.body["message"]  # type: ignore[index]
            assert body_["param"] is None and body_["code"] is None

        with pytest.raises(openai.NotFoundError) as info:
            await c.beta.assistants.retrieve("asst_missing")
        assert error_json(info.value)["message"] == "No assistant found with id 'asst_missing'."

    serve(body)


def test_unknown_route_is_404_json() -> None:
    async def body(env: Env) -> None:
        with pytest.raises(openai.NotFoundError) as info:
            await env.client.get("/nothing/here", cast_to=object)
        assert "Invalid URL" in error_json(info.value)["message"]

    serve(body)


def test_unknown_request_argument_is_400_naming_it() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("hi")
        cases = [
            c.beta.assistants.create(model="echo", extra_body={"colour": "blue"}),
            c.beta.assistants.update(a.id, extra_body={"colour": "blue"}),
            c.beta.threads.create(extra_body={"colour": "blue"}),
            c.beta.threads.update(t.id, extra_body={"colour": "blue"}),
            c.beta.threads.messages.create(t.id, role="user", content="x", extra_body={"colour": "blue"}),
            c.beta.threads.runs.create(t.id, assistant_id=a.id, extra_body={"colour": "blue"}),
            c.beta.threads.create_and_run(assistant_id=a.id, extra_body={"colour": "blue"}),
        ]
        for call in cases:
            with pytest.raises(openai.BadRequestError) as info:
                await call
            err = error_json(info.value)
            assert info.value.status_code == 400
            assert err["param"] == "colour" and info.value.param == "colour"
            assert "colour" in err["message"] and err["type"] == "invalid_request_error"
        # nothing was started by the rejected run requests
        assert (await c.beta.threads.runs.list(t.id)).data == []

    serve(body)


def test_unknown_model_is_400_naming_it() -> None:
    async def body(env: Env) -> None:
        c = env.client
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.assistants.create(model="gpt-4o")
        err = error_json(info.value)
        assert "gpt-4o" in err["message"] and err["param"] == "model"
        a = await env.assistant()
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.assistants.update(a.id, model="gpt-4o")
        assert "gpt-4o" in error_json(info.value)["message"]
        assert (await c.beta.assistants.retrieve(a.id)).model == "echo"
        t = await env.thread("hi")
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.runs.create(t.id, assistant_id=a.id, model="gpt-4o")
        assert "gpt-4o" in error_json(info.value)["message"]
        assert [a.id] == [x.id for x in (await c.beta.assistants.list()).data]

    serve(body)


def test_scripted_model_without_rules_is_400() -> None:
    async def body(env: Env) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            await env.client.beta.assistants.create(model="scripted")
        err = error_json(info.value)
        assert "scripted" in err["message"] and "rules" in err["message"] and err["param"] == "model"
        assert (await env.client.beta.assistants.list()).data == []

    serve(body, rules=None)


def test_scripted_model_with_empty_rules_is_accepted() -> None:
    async def body(env: Env) -> None:
        a = await env.assistant("scripted")
        assert a.model == "scripted"

    serve(body, rules=[])


def test_request_validation_errors() -> None:
    async def body(env: Env) -> None:
        c = env.client
        bad = [
            (c.beta.assistants.create(model="echo", metadata={str(i): "v" for i in range(17)}), "metadata"),
            (c.beta.assistants.create(model="echo", metadata={"k": 1}), "metadata"),  # type: ignore[dict-item]
            (c.beta.assistants.create(model="echo", metadata={"k" * 65: "v"}), "metadata"),
            (c.beta.assistants.create(model="echo", name=5), "name"),  # type: ignore[arg-type]
            (c.beta.assistants.create(model="echo", tools=[{"type": "browser"}]), "tools[0].type"),  # type: ignore
            (c.beta.assistants.create(model="echo", tools=[{"type": "function", "function": {}}]),  # type: ignore
             "tools[0].function.name"),
            (c.post("/assistants", body={}, cast_to=object), "model"),
            (c.beta.threads.create(messages=[{"role": "system", "content": "x"}]),  # type: ignore[list-item]
             "messages[0].role"),
            (c.beta.threads.create(messages=[{"role": "user", "content": [{"type": "image_url",
                                                                          "image_url": {"url": "x"}}]}]),
             "messages[0].content[0]"),
        ]
        for call, param in bad:
            with pytest.raises(openai.BadRequestError) as info:
                await call
            assert error_json(info.value)["param"] == param

        raw = await c.post("/threads", body=None, cast_to=object, options={"headers": {}})
        assert raw["object"] == "thread"  # type: ignore[index]

    serve(body)


# -- threads --------------------------------------------------------------------------------------

def test_thread_create_with_messages_retrieve_update_delete() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t = await env.thread(metadata={"case": "1"})
        assert t.id.startswith("thread_") and t.object == "thread" and t.metadata == {"case": "1"}
        assert (await env.messages(t.id)) == []

        t = check(await c.beta.threads.create(messages=[
            {"role": "user", "content": "first", "metadata": {"n": "1"}},
            {"role": "assistant", "content": "second"},
            {"role": "user", "content": [{"type": "text", "text": "third "}, {"type": "text", "text": "part"}]},
        ]))
        msgs = await env.messages(t.id, order="asc")
        assert [(m.role, text_of(m)) for m in msgs] == [
            ("user", "first"), ("assistant", "second"), ("user", "third part")]
        for m in msgs:
            assert m.id.startswith("msg_") and m.thread_id == t.id and m.status == "completed"
            assert m.object == "thread.message" and m.run_id is None and m.assistant_id is None
        assert msgs[0].metadata == {"n": "1"}
        assert len(msgs[2].content) == 2

        got = check(await c.beta.threads.retrieve(t.id))
        assert got == t
        raw = await c.beta.threads.with_raw_response.retrieve(t.id)
        assert Thread.model_validate(raw.http_response.json()) == t

        upd = check(await c.beta.threads.update(t.id, metadata={"k": "v"}))
        assert upd.id == t.id and upd.metadata == {"k": "v"}
        assert (await c.beta.threads.retrieve(t.id)).metadata == {"k": "v"}

        deleted = check(await c.beta.threads.delete(t.id))
        assert isinstance(deleted, ThreadDeleted)
        assert deleted.id == t.id and deleted.deleted is True and deleted.object == "thread.deleted"
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.retrieve(t.id)
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.messages.list(t.id)
        for m in msgs:
            with pytest.raises(openai.NotFoundError):
                await c.beta.threads.messages.retrieve(m.id, thread_id=t.id)
        # the messages are gone from the store itself, not just hidden behind the thread
        assert env.backend.store.children("message", t.id) == []

    serve(body)


def test_deleting_a_thread_removes_its_runs_and_steps() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert run.status == "completed"
        other = await env.thread("keep me")
        await c.beta.threads.delete(t.id)
        store = env.backend.store
        for kind in ("message", "run", "run_step"):
            assert store.children(kind, t.id) == []  # type: ignore[arg-type]
        assert len(store.children("message", other.id)) == 1
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.runs.retrieve(run.id, thread_id=t.id)

    serve(body)


# -- messages -------------------------------------------------------------------------------------

def test_message_create_list_retrieve_update_delete() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t = await env.thread()
        m1 = check(await c.beta.threads.messages.create(t.id, role="user", content="one",
                                                        metadata={"a": "1"}))
        assert isinstance(m1, Message)
        assert m1.id.startswith("msg_") and m1.thread_id == t.id and m1.role == "user"
        assert text_of(m1) == "one" and m1.metadata == {"a": "1"} and m1.status == "completed"
        assert m1.content[0].text.annotations == []  # type: ignore[union-attr]
        m2 = check(await c.beta.threads.messages.create(
            t.id, role="assistant", content=[{"type": "text", "text": "two"}]))
        assert m2.role == "assistant" and text_of(m2) == "two"

        got = check(await c.beta.threads.messages.retrieve(m1.id, thread_id=t.id))
        assert got == m1
        raw = await c.beta.threads.messages.with_raw_response.retrieve(m2.id, thread_id=t.id)
        assert Message.model_validate(raw.http_response.json()) == m2

        upd = check(await c.beta.threads.messages.update(m1.id, thread_id=t.id, metadata={"a": "2"}))
        assert upd.metadata == {"a": "2"} and text_of(upd) == "one"
        assert (await c.beta.threads.messages.retrieve(m1.id, thread_id=t.id)).metadata == {"a": "2"}

        assert [m.id for m in await env.messages(t.id)] == [m2.id, m1.id]
        deleted = check(await c.beta.threads.messages.delete(m1.id, thread_id=t.id))
        assert isinstance(deleted, MessageDeleted)
        assert deleted.id == m1.id and deleted.deleted and deleted.object == "thread.message.deleted"
        assert [m.id for m in await env.messages(t.id)] == [m2.id]
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.messages.retrieve(m1.id, thread_id=t.id)
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.messages.delete(m1.id, thread_id=t.id)

    serve(body)


def test_message_of_another_thread_is_404() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t1 = await env.thread("in one")
        t2 = await env.thread("in two")
        m = (await env.messages(t1.id))[0]
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.messages.retrieve(m.id, thread_id=t2.id)
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.messages.update(m.id, thread_id=t2.id, metadata={"x": "y"})
        with pytest.raises(openai.NotFoundError):
            await c.beta.threads.messages.delete(m.id, thread_id=t2.id)
        assert text_of(await c.beta.threads.messages.retrieve(m.id, thread_id=t1.id)) == "in one"

    serve(body)


def test_message_list_filters_by_run_id() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        t = await env.thread("first")
        r1 = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        await c.beta.threads.messages.create(t.id, role="user", content="second")
        r2 = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id)
        assert r1.status == r2.status == "completed"

        only1 = await env.messages(t.id, run_id=r1.id)
        assert [(m.role, text_of(m), m.run_id, m.assistant_id) for m in only1] == [
            ("assistant", "first", r1.id, a.id)]
        only2 = await env.messages(t.id, run_id=r2.id)
        assert [text_of(m) for m in only2] == ["second"]
        assert await env.messages(t.id, run_id="run_unrelated") == []
        assert len(await env.messages(t.id)) == 4

    serve(body)


def _page(raw: dict) -> tuple[list[str], str | None, str | None, bool]:  # type: ignore[type-arg]
    ids = [m["id"] for m in raw["data"]]
    for m in raw["data"]:
        Message.model_validate(m)
    assert raw["object"] == "list"
    return ids, raw["first_id"], raw["last_id"], raw["has_more"]


def test_message_ordering_and_pagination_over_seven_messages() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t = await env.thread(*[f"m{i}" for i in range(7)])
        asc = [m.id for m in await env.messages(t.id, order="asc")]
        desc = [m.id for m in await env.messages(t.id)]
        assert len(asc) == 7 and desc == asc[::-1]
        assert [text_of(m) for m in await env.messages(t.id, order="asc")] == [f"m{i}" for i in range(7)]
        assert [m.id for m in await env.messages(t.id, order="desc")] == desc

        async def page(**kw: object) -> tuple[list[str], str | None, str | None, bool]:
            raw = await c.beta.threads.messages.with_raw_response.list(t.id, **kw)  # type: ignore[arg-type]
            return _page(raw.http_response.json())

        # walking forwards with `after`
        assert await page(order="asc", limit=3) == (asc[0:3], asc[0], asc[2], True)
        assert await page(order="asc", limit=3, after=asc[2]) == (asc[3:6], asc[3], asc[5], True)
        assert await page(order="asc", limit=3, after=asc[5]) == (asc[6:], asc[6], asc[6], False)
        assert await page(order="asc", limit=3, after=asc[6]) == ([], None, None, False)
        assert await page(order="desc", limit=3) == (desc[0:3], desc[0], desc[2], True)
        assert await page(order="desc", limit=3, after=desc[2]) == (desc[3:6], desc[3], desc[5], True)
        assert await page(order="desc", limit=3, after=desc[5]) == (desc[6:], desc[6], desc[6], False)
        assert await page(order="asc", limit=7) == (asc, asc[0], asc[6], False)
        assert await page(order="asc", limit=100) == (asc, asc[0], asc[6], False)
        # walking backwards with `before`: the items just before the cursor, in the page's order
        assert await page(order="asc", limit=3, before=asc[6]) == (asc[3:6], asc[3], asc[5], True)
        assert await page(order="asc", limit=3, before=asc[3]) == (asc[0:3], asc[0], asc[2], False)
        assert await page(order="asc", before=asc[0]) == ([], None, None, False)
        assert await page(order="desc", limit=2, before=desc[4]) == (desc[2:4], desc[2], desc[3], True)
        assert await page(order="desc", limit=5, before=desc[4]) == (desc[0:4], desc[0], desc[3], False)
        # both cursors: the window between them
        assert (await page(order="asc", after=asc[1], before=asc[5]))[0] == asc[2:5]

        # the SDK's auto-pagination follows `after` through every page
        seen = [m.id async for m in c.beta.threads.messages.list(t.id, order="asc", limit=2)]
        assert seen == asc
        first = await c.beta.threads.messages.list(t.id, limit=3)
        assert first.has_more is True and [m.id for m in first.data] == desc[:3]
        second = await first.get_next_page()
        assert [m.id for m in second.data] == desc[3:6]

    serve(body)


def test_message_list_rejects_bad_pagination_arguments() -> None:
    async def body(env: Env) -> None:
        c = env.client
        t = await env.thread("a", "b")
        for kw, param in [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"after": "msg_nope"}, "after"),
                          ({"before": "msg_nope"}, "before"), ({"order": "sideways"}, "order")]:
            with pytest.raises(openai.BadRequestError) as info:
                await c.beta.threads.messages.list(t.id, **kw)  # type: ignore[arg-type]
            assert error_json(info.value)["param"] == param
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.messages.list(t.id, extra_query={"limit": "many"})
        assert error_json(info.value)["param"] == "limit"

    serve(body)


def test_assistant_list_pagination() -> None:
    async def body(env: Env) -> None:
        c = env.client
        ids = [(await env.assistant(name=f"a{i}")).id for i in range(5)]
        page = await c.beta.assistants.list(limit=2, order="asc")
        assert [a.id for a in page.data] == ids[:2] and page.has_more
        page = await c.beta.assistants.list(limit=2, order="asc", after=ids[1])
        assert [a.id for a in page.data] == ids[2:4] and page.has_more
        page = await c.beta.assistants.list(limit=2, order="asc", after=ids[3])
        assert [a.id for a in page.data] == ids[4:] and not page.has_more
        assert [a.id async for a in c.beta.assistants.list(limit=2)] == ids[::-1]

    serve(body)


def test_malformed_bodies_are_400() -> None:
    import httpx2

    from runner.server import create_app

    async def body(env: Env) -> None:
        app = create_app(env.backend)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://x") as http:
            for content in (b"{not json", b"[1, 2]", b'"text"'):
                r = await http.post("/v1/assistants", content=content, headers={"content-type": "application/json"})
                assert r.status_code == 400
                err = r.json()["error"]
                assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
            r = await http.post("/v1/threads", json={"messages": "hello"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
            r = await http.put("/v1/assistants")
            assert r.status_code == 404 and "Invalid URL" in r.json()["error"]["message"]
            t = await env.thread("hi")
            r = await http.get(f"/v1/threads/{t.id}/messages", params={"limit": "x"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
            r = await http.get(f"/v1/threads/{t.id}/messages", params={"order": "asc", "limit": "1"})
            assert r.status_code == 200 and r.json()["has_more"] is False and len(r.json()["data"]) == 1

    serve(body)


def test_unknown_nested_request_argument_is_400() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant()
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.create_and_run(assistant_id=a.id, thread={"colour": "blue"})  # type: ignore
        assert "colour" in error_json(info.value)["message"]
        with pytest.raises(openai.BadRequestError) as info:
            await c.beta.threads.create(messages=[{"role": "user", "content": "x", "colour": "blue"}])  # type: ignore
        assert "colour" in error_json(info.value)["message"]

    serve(body)
