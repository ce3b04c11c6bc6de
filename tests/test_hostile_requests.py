"""The backend under hostile requests: every POST route answers a corpus of malformed, oversized, deeply
nested and wrongly typed bodies with a 4xx in the official error shape, never a 5xx, and keeps answering.

Most of it runs in-process (httpx2's ASGI transport); one test goes over a real `runner serve` for what
only a socket shows: a 413 sent before the rest of a huge body is read, and keep-alive connections that
stay usable after refused requests.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_process import serving
from server_helpers import RULES, WEATHER_TOOL
from starlette.routing import Route

from runner.server import Backend, BackendSettings, create_app
from runner.server.body import MAX_BODY_BYTES, MAX_DEPTH
from runner.server.checks import SCHEMAS, Rule

JSON = {"content-type": "application/json"}

# the request schema of each POST route; a new route fails test_every_post_route_has_a_schema until added
ROUTE_SCHEMAS = {
    "/v1/assistants": "CreateAssistantRequest",
    "/v1/assistants/{assistant_id}": "ModifyAssistantRequest",
    "/v1/threads": "CreateThreadRequest",
    "/v1/threads/runs": "CreateThreadAndRunRequest",
    "/v1/threads/{thread_id}": "ModifyThreadRequest",
    "/v1/threads/{thread_id}/messages": "CreateMessageRequest",
    "/v1/threads/{thread_id}/messages/{message_id}": "ModifyMessageRequest",
    "/v1/threads/{thread_id}/runs": "CreateRunRequest",
    "/v1/threads/{thread_id}/runs/{run_id}": "ModifyRunRequest",
    "/v1/threads/{thread_id}/runs/{run_id}/cancel": "",
    "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs": "SubmitToolOutputsRunRequest",
    "/v1/files": "CreateFileRequest",
    "/v1/uploads": "CreateUploadRequest",
    "/v1/uploads/{upload_id}/parts": "AddUploadPartRequest",
    "/v1/uploads/{upload_id}/complete": "CompleteUploadRequest",
    "/v1/uploads/{upload_id}/cancel": "",
    "/v1/vector_stores": "CreateVectorStoreRequest",
    "/v1/vector_stores/{vector_store_id}": "UpdateVectorStoreRequest",
    "/v1/vector_stores/{vector_store_id}/files": "CreateVectorStoreFileRequest",
    "/v1/vector_stores/{vector_store_id}/files/{file_id}": "UpdateVectorStoreFileAttributesRequest",
    "/v1/vector_stores/{vector_store_id}/file_batches": "CreateVectorStoreFileBatchRequest",
    "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel": "",
    "/v1/vector_stores/{vector_store_id}/search": "VectorStoreSearchRequest",
    "/v1/conversations": "CreateConversationBody",
    "/v1/conversations/{conversation_id}": "UpdateConversationBody",
    "/v1/conversations/{conversation_id}/items": "CreateConversationItemsRequest",
    "/v1/responses": "CreateResponse",
    "/v1/responses/{response_id}/cancel": "",
}


# routes whose body is multipart/form-data (a file with text fields): a JSON body is refused before it is read,
# and their parameters' wrong values and size limits are sent as forms in test_server_files.py
MULTIPART = {"CreateFileRequest", "AddUploadPartRequest"}


def _deep(opening: bytes, closing: bytes, depth: int, inner: bytes = b"1") -> bytes:
    return opening * depth + inner + closing * depth


# (what it is, body, headers): none of these is a valid request to any route
CORPUS: list[tuple[str, bytes, dict[str, str]]] = [
    ("100,000 nested arrays", _deep(b"[", b"]", 100_000), JSON),
    ("100,000 nested objects", _deep(b'{"a":', b"}", 100_000), JSON),
    ("arrays nested just past the limit", b'{"metadata": ' + _deep(b"[", b"]", MAX_DEPTH) + b"}", JSON),
    ("objects nested past the limit, under the recursion limit", _deep(b'{"metadata":', b"}", 500, b"{}"), JSON),
    ("unclosed nesting", b"[" * 100_000, JSON),
    ("a lone high surrogate", b'{"name": "\\ud800", "model": "echo"}', JSON),
    ("a lone low surrogate in a key", b'{"\\udc00": 1}', JSON),
    ("a lone surrogate deep inside", b'{"metadata": {"k": "ok\\udfff"}}', JSON),
    ("a surrogate encoded in UTF-8 bytes", b'{"name": "\xed\xa0\x80"}', JSON),
    ("invalid UTF-8", b'{"name": "\xff\xfe"}', JSON),
    ("a UTF-8 byte order mark", b'\xef\xbb\xbf{}', JSON),
    ("UTF-16", '{"name": "x"}'.encode("utf-16"), JSON),
    ("NaN", b'{"temperature": NaN}', JSON),
    ("Infinity", b'{"temperature": Infinity}', JSON),
    ("-Infinity", b'{"top_p": -Infinity}', JSON),
    ("a float that overflows", b'{"temperature": 1e999}', JSON),
    ("an integer of 5,000 digits", b'{"max_prompt_tokens": ' + b"9" * 5000 + b"}", JSON),
    ("a duplicate key", b'{"metadata": {}, "metadata": {}}', JSON),
    ("a duplicate nested key", b'{"metadata": {"a": "1", "a": "2"}}', JSON),
    ("an array", b"[]", JSON),
    ("a string", b'"text"', JSON),
    ("a number", b"5", JSON),
    ("null", b"null", JSON),
    ("true", b"true", JSON),
    ("whitespace only", b"   \n", JSON),
    ("truncated JSON", b'{"metadata": {"a": ', JSON),
    ("trailing garbage", b"{} {}", JSON),
    ("a NUL byte", b"\x00", JSON),
    ("single quotes", b"{'a': 1}", JSON),
    ("comments", b"{/* hi */}", JSON),
    ("an unknown parameter", b'{"colour": "blue"}', JSON),
    ("a huge unknown parameter name", b'{"' + b"k" * 1_000_000 + b'": 1}', JSON),
    ("a huge string everywhere", json.dumps({k: "x" * 300_000 for k in ("name", "model", "role")}).encode(), JSON),
    ("a huge array", b'{"metadata": [' + b"0," * 1_000_000 + b"0]}", JSON),
    ("form data", b"model=echo", {"content-type": "application/x-www-form-urlencoded"}),
    ("multipart", b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\necho\r\n--x--\r\n',
     {"content-type": "multipart/form-data; boundary=x"}),
    ("JSON sent as text", b'{"metadata": {}}', {"content-type": "text/plain"}),
    ("XML", b"<model>echo</model>", {"content-type": "application/xml"}),
]

WRONG_VALUES: list[Any] = [None, True, False, 0, -1, 1.5, 10**30, "", "x", [], [None], {}, {"": None}]


def _env_routes(app: Any) -> list[str]:
    return [r.path for r in app.routes if isinstance(r, Route) and "POST" in (r.methods or set())]


class World:
    """A backend with one of each object, so that every POST route reaches its body."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        self.http = http
        self.ids: dict[str, str] = {}

    async def setup(self) -> None:
        h = self.http
        a = (await h.post("/v1/assistants", json={"model": "scripted", "tools": [WEATHER_TOOL]})).json()["id"]
        t = (await h.post("/v1/threads", json={"messages": [{"role": "user", "content": "weather in Oslo"}]})).json()
        run = (await h.post(f"/v1/threads/{t['id']}/runs", json={"assistant_id": a})).json()
        for _ in range(200):  # the scripted model asks for the tool at once
            run = (await h.get(f"/v1/threads/{t['id']}/runs/{run['id']}")).json()
            if run["status"] == "requires_action":
                break
            await asyncio.sleep(0.01)
        assert run["status"] == "requires_action", run
        message = (await h.get(f"/v1/threads/{t['id']}/messages")).json()["data"][0]["id"]
        upload = (await h.post("/v1/uploads", json={"filename": "a.txt", "purpose": "assistants", "bytes": 1,
                                                   "mime_type": "text/plain"})).json()["id"]
        file = (await h.post("/v1/files", files={"purpose": (None, "assistants"),
                                                  "file": ("a.txt", b"some text", "text/plain")})).json()["id"]
        store = (await h.post("/v1/vector_stores", json={"file_ids": [file]})).json()["id"]
        batch = (await h.post(f"/v1/vector_stores/{store}/file_batches", json={"file_ids": [file]})).json()["id"]
        conversation = (await h.post("/v1/conversations", json={})).json()["id"]
        response = (await h.post("/v1/responses", json={"model": "echo", "input": "hi"})).json()["id"]
        self.ids = {"assistant_id": a, "thread_id": t["id"], "run_id": run["id"], "message_id": message,
                    "upload_id": upload, "file_id": file, "vector_store_id": store, "batch_id": batch,
                    "conversation_id": conversation, "response_id": response}

    def url(self, route: str) -> str:
        return route.format(**self.ids)

    def base(self, schema: str) -> dict[str, Any]:
        """A body the schema accepts, to which one wrong value is added."""
        return {"CreateAssistantRequest": {"model": "echo"},
                "CreateMessageRequest": {"role": "user", "content": "x"},
                "CreateRunRequest": {"assistant_id": self.ids["assistant_id"]},
                "CreateThreadAndRunRequest": {"assistant_id": self.ids["assistant_id"]},
                "SubmitToolOutputsRunRequest": {"tool_outputs": []},
                "CreateUploadRequest": {"filename": "a.txt", "purpose": "assistants", "bytes": 1,
                                        "mime_type": "text/plain"},
                "CompleteUploadRequest": {"part_ids": []},
                "CreateVectorStoreFileRequest": {"file_id": self.ids["file_id"]},
                "UpdateVectorStoreFileAttributesRequest": {"attributes": {}},
                "VectorStoreSearchRequest": {"query": "text"},
                "UpdateConversationBody": {"metadata": {}},
                "CreateConversationItemsRequest": {"items": []},
                "CreateResponse": {"model": "echo", "input": "x"}}.get(schema, {})

    async def still_answers(self) -> None:
        r = await self.http.post("/v1/assistants", json={"model": "echo", "name": "after"})
        assert r.status_code == 200 and r.json()["name"] == "after"
        r = await self.http.get(f"/v1/threads/{self.ids['thread_id']}/messages", params={"limit": "1"})
        assert r.status_code == 200 and len(r.json()["data"]) == 1


def _in_world(body: Callable[[World, Any], Awaitable[None]]) -> None:
    async def main() -> None:
        backend = Backend(BackendSettings(rules=RULES))
        app = create_app(backend)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://embedded.runner") as http:
            world = World(http)
            await world.setup()
            try:
                await body(world, app)
            finally:
                await backend.executor.shutdown()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.run(main())


def assert_api_error(r: httpx2.Response, what: str) -> dict[str, Any]:
    """A 4xx in the official shape (never a 5xx); its `error` object."""
    assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert set(body) == {"error"}, what
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, what
    assert isinstance(error["message"], str) and error["message"] and len(error["message"]) < 1000, what
    assert error["type"] == "invalid_request_error", what
    assert error["param"] is None or isinstance(error["param"], str) and len(error["param"]) <= 300, what
    assert "Traceback" not in r.text, what
    return error


def test_every_post_route_has_a_schema() -> None:
    routes = _env_routes(create_app(Backend()))
    assert sorted(routes) == sorted(ROUTE_SCHEMAS)
    assert set(ROUTE_SCHEMAS.values()) == set(SCHEMAS)


def test_every_post_route_answers_the_hostile_corpus_with_4xx_errors() -> None:
    async def body(world: World, app: Any) -> None:
        for route in _env_routes(app):
            for what, content, headers in CORPUS:
                r = await world.http.post(world.url(route), content=content, headers=headers)
                assert_api_error(r, f"{route} {what}")
        await world.still_answers()

    _in_world(body)


def _wrong_values(rule: Rule) -> list[Any]:
    """Values the rule refuses: other JSON types, null when not nullable, each bound crossed."""
    wrong = [v for v in WRONG_VALUES if v is None and not rule.nullable]
    for v in WRONG_VALUES:
        kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
            type(v))
        if v is not None and kind not in rule.types and not (kind == "integer" and "number" in rule.types):
            wrong.append(v)
    if rule.minimum is not None:
        wrong.append(rule.minimum - 1)
    if rule.maximum is not None:
        wrong += [rule.maximum + 0.5, rule.maximum * 50]
    if rule.max_length is not None:
        wrong.append("x" * (rule.max_length + 1))
    if rule.min_length:
        wrong.append("")
    if rule.pattern is not None:
        wrong += ["../x", "a b", "x" * 65]
    if rule.enum is not None:
        wrong += ["not-one-of-them", rule.enum[0].upper() + " "]
    if rule.max_items is not None and "array" in rule.types:
        wrong.append([{}] * (rule.max_items + 1))
    if rule.min_items:
        wrong.append([])
    return wrong


def test_a_wrong_value_of_any_parameter_is_a_400_naming_it() -> None:
    async def body(world: World, app: Any) -> None:
        for route, schema in ROUTE_SCHEMAS.items():
            if schema in MULTIPART:
                continue
            for param, rule in SCHEMAS[schema].items():
                if "." in param or "[" in param:
                    continue  # nested parameters: test_request_checks.py sends them one by one
                for value in _wrong_values(rule):
                    request = {**world.base(schema), param: value}
                    r = await world.http.post(world.url(route), json=request)
                    error = assert_api_error(r, f"{route} {param}={str(value)[:40]}")
                    assert r.status_code == 400
                    assert error["param"] == param or error["param"].startswith((f"{param}.", f"{param}[")), (
                        route, param, str(value)[:40], error)
        await world.still_answers()

    _in_world(body)


def test_a_body_over_the_limit_is_413_before_the_rest_is_read() -> None:
    async def body(world: World, app: Any) -> None:
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(100):  # 100 MiB if it were all read
                sent += 1
                yield b" " * (1024 * 1024)

        for route in _env_routes(app):
            sent = 0
            r = await world.http.post(world.url(route), content=chunks(), headers=JSON)  # chunked: no length
            error = assert_api_error(r, route)
            if ROUTE_SCHEMAS[route] in MULTIPART:  # not a form: refused unread (what follows is drained as for a 404)
                assert r.status_code == 400 and sent <= MAX_BODY_BYTES // (1024 * 1024) + 2, (route, sent)
                continue
            assert r.status_code == 413 and error["code"] == "request_too_large" and error["param"] is None
            assert r.headers["connection"] == "close"
            assert sent <= MAX_BODY_BYTES // (1024 * 1024) + 2, f"{route} read {sent} MiB"
        r = await world.http.post("/v1/assistants", content=b'{"model": "echo"}' + b" " * (MAX_BODY_BYTES - 17),
                                  headers=JSON)
        assert r.status_code == 200  # exactly at the limit
        await world.still_answers()

    _in_world(body)


def test_a_body_left_unread_is_dropped_when_small_and_closes_the_connection_when_huge() -> None:
    async def body(world: World, app: Any) -> None:
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(100):
                sent += 1
                yield b" " * (1024 * 1024)

        missing = "/v1/threads/thread_missing/messages"  # a 404 answered before the body is read
        r = await world.http.post(missing, json={"role": "user", "content": "x"})
        assert r.status_code == 404 and "connection" not in r.headers
        r = await world.http.post(missing, content=chunks(), headers=JSON)
        assert_api_error(r, missing)
        assert r.status_code == 404 and r.headers["connection"] == "close"
        assert sent <= MAX_BODY_BYTES // (1024 * 1024) + 2
        r = await world.http.post(missing, content=b"{}", headers={**JSON, "content-length": str(10**9)})
        assert r.status_code == 404 and r.headers["connection"] == "close"
        await world.still_answers()

    _in_world(body)


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("x", 80), "client": ("y", 1),
            "root_path": ""}


def test_a_client_gone_before_its_body_is_complete_is_no_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        app = create_app(Backend())
        messages = [{"type": "http.request", "body": b'{"meta', "more_body": True}, {"type": "http.disconnect"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        try:
            await app(_scope("/v1/threads", [(b"content-type", b"application/json")]), receive, send)
        finally:
            await app.state.backend.aclose()
        assert 400 <= sent[0]["status"] < 500

    asyncio.run(main())
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_an_unexpected_failure_is_a_500_in_the_api_shape_without_the_traceback() -> None:
    async def body(world: World, app: Any) -> None:
        store = app.state.backend.store
        original = store.list

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret internals")

        store.list = broken
        try:
            r = await world.http.get("/v1/assistants")
        finally:
            store.list = original
        assert r.status_code == 500
        assert r.json() == {"error": {"message": "The server had an error while processing your request. Sorry "
                                                 "about that!", "type": "server_error", "param": None, "code": None}}
        assert "secret" not in r.text
        await world.still_answers()

    _in_world(body)


# any JSON value, strings with every code point (lone surrogates included: json.dumps escapes them)
_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(_TEXT, inner, max_size=4), max_leaves=12)
_KEYS = sorted({p.split(".")[0].split("[")[0] for rules in SCHEMAS.values() for p in rules})


def test_generated_json_bodies_never_get_a_5xx() -> None:
    async def body(world: World, app: Any) -> None:
        routes = _env_routes(app)
        loop = asyncio.get_running_loop()
        answers: list[int] = []

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(route=st.sampled_from(routes),
               request=st.dictionaries(st.sampled_from(_KEYS) | _TEXT, _VALUES, max_size=5) | _VALUES)
        def one(route: str, request: Any) -> None:
            content = json.dumps(request).encode()  # NaN and Infinity as their literals
            r = asyncio.run_coroutine_threadsafe(
                world.http.post(world.url(route), content=content, headers=JSON), loop).result(timeout=30)
            answers.append(r.status_code)
            if r.status_code >= 400:
                assert_api_error(r, f"{route} {content[:200]!r}")

        await asyncio.to_thread(one)
        assert answers and all(status < 500 for status in answers)
        await world.still_answers()

    _in_world(body)


# -- over a real `runner serve` ----------------------------------------------------------------------------

def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_runner_serve_refuses_hostile_requests_and_keeps_its_connections(tmp_path: Path) -> None:
    with serving(tmp_path, "--provider", "echo", "--log-level", "warning") as server:
        conn = _connection(server.url)
        status, _, _ = _request(conn, "GET", "/v1/assistants")
        assert status == 200
        sock = conn.sock
        for what, content, headers in CORPUS:
            status, answered, raw = _request(conn, "POST", "/v1/assistants", content, headers)
            assert 400 <= status < 500, (what, status, raw[:200])
            error = json.loads(raw)["error"]
            assert set(error) == {"message", "type", "param", "code"}, what
            assert answered.get("connection") != "close" and conn.sock is sock, f"{what}: the connection was closed"
        status, _, raw = _request(conn, "POST", "/v1/assistants", b'{"model": "echo"}', JSON)
        assert status == 200 and conn.sock is sock
        conn.close()

        # a huge declared body: answered at once, from the headers and the first bytes, then the connection closes
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as raw_sock:
            raw_sock.sendall(b"POST /v1/assistants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 104857600\r\n\r\n" + b'{"model": "echo", "name": "' + b"x" * 1000)
            start = time.monotonic()
            answer = b""
            while chunk := raw_sock.recv(65536):
                answer += chunk
            assert time.monotonic() - start < 5
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        assert b"connection: close" in head.lower()
        error = json.loads(payload)["error"]
        assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
        assert error["param"] is None and str(MAX_BODY_BYTES) in error["message"]

        # and the server answers as before
        conn = _connection(server.url)
        status, _, raw = _request(conn, "GET", "/v1/assistants")
        assert status == 200 and len(json.loads(raw)["data"]) == 1
        conn.close()
        log = server.stop()
    assert "Traceback" not in log and "Exception in ASGI application" not in log


@pytest.mark.parametrize("declared", ["abc", "-1", "1 2"])
def test_a_content_length_that_is_not_a_number_is_refused(declared: str) -> None:
    async def main() -> None:
        app = create_app(Backend())
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = _scope("/v1/threads", [(b"content-length", declared.encode()), (b"content-type", b"application/json")])
        try:
            await app(scope, receive, send)
        finally:
            await app.state.backend.aclose()
        assert sent[0]["status"] == 400
        assert json.loads(sent[1]["body"])["error"]["type"] == "invalid_request_error"

    asyncio.run(main())
