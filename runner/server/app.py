"""The Assistants-compatible HTTP surface of the built-in backend (a Starlette ASGI app).

The same app is reached in-process by the runner (through httpx2's ASGI transport, no socket) and
served over HTTP by `runner serve`. Routes parse and check the request, then hand over to the store
and the run executor; they hold no state of their own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runner.server import checks, objects
from runner.server.auth import BearerAuth
from runner.server.body import read_object, rest_is_dropped
from runner.server.errors import APIError, invalid, server_error, shown
from runner.server.executor import ACTIVE_RUN_STATUSES, RunExecutor
from runner.server.providers import LiveSettings, ProviderSet
from runner.server.store import Store

Handler = Callable[["Backend", Request], Awaitable[Response]]

_log = logging.getLogger("runner.server")


@dataclass
class BackendSettings:
    """How a backend instance behaves."""

    db_path: str = ":memory:"
    rules: Sequence[dict[str, Any]] | None = None
    provider: str | None = None
    poll_after_ms: int = 25
    api_key: str | None = field(default=None, repr=False)  # when set, requests need it as a Bearer token
    live: LiveSettings = field(default_factory=LiveSettings)  # live providers; default: none configured


class Backend:
    """One backend instance: its store, its providers and its run executor."""

    def __init__(self, settings: BackendSettings | None = None) -> None:
        self.settings = settings or BackendSettings()
        self.store = Store(self.settings.db_path)
        self.providers = ProviderSet(rules=self.settings.rules, force=self.settings.provider, live=self.settings.live)
        self.executor = RunExecutor(self.store, self.providers)
        self.recovered = self.executor.recover()  # runs a previous process left in flight
        self._closed = False

    async def aclose(self) -> None:
        """Shut down: cancel the runs still executing (they end `cancelled`, not stranded), close the live
        providers' SDK clients that were created, then the store. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.executor.shutdown()
            for provider in self.providers.providers.values():
                client = getattr(provider, "_client", None)  # live providers create theirs on first use
                if client is not None:
                    await client.close()
        finally:
            self.store.close()


# -- request helpers ------------------------------------------------------------------------------

async def _body(request: Request, schema: str) -> dict[str, Any]:
    """The request's JSON body, read within the limits and checked against its request schema (400 or 413)."""
    body = await read_object(request)
    checks.check(schema, body)
    return body


def _null_clears_metadata(body: dict[str, Any]) -> None:
    if "metadata" in body and body["metadata"] is None:
        body["metadata"] = {}  # null clears it, as the API answers with {}


def _check_tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    """400 for a `tool_choice` naming a tool the run does not have (its shape is checked with the rest)."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    kind = choice["type"]
    if kind in ("file_search", "code_interpreter"):
        # accepted and stored; the model is not steered by it until the backend executes these tools
        if not any(t.get("type") == kind for t in tools):
            raise invalid(f"Invalid value for 'tool_choice': the run's tools have no {kind} tool.", "tool_choice")
        return
    name = choice["function"]["name"]
    if name not in {t["function"]["name"] for t in tools if t.get("type") == "function"}:
        raise invalid(f"tool_choice names the function '{shown(name)}', which is not among the run's "
                      "tools.", "tool_choice.function.name")


def _content(content: str | list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """Message content from a checked request (a string or content parts) in the stored form."""
    if isinstance(content, str):
        return objects.text_content(content)
    parts = []
    for i, part in enumerate(content):
        if part["type"] != "text":
            raise invalid("Only text content parts are supported by this backend.", f"{param}[{i}]")
        parts.extend(objects.text_content(part["text"]))
    return parts


def _list_args(request: Request) -> dict[str, Any]:
    return checks.list_params(request.query_params)


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


# -- assistants -----------------------------------------------------------------------------------

async def create_assistant(b: Backend, request: Request) -> Response:
    body = await _body(request, "CreateAssistantRequest")
    b.providers.for_model(body["model"])  # an unknown model is a 400 now, not a failed run later
    return _json(b.store.insert("assistant", objects.assistant(body)))  # 400 for what the SDK type refuses


async def list_assistants(b: Backend, request: Request) -> Response:
    return _json(b.store.list("assistant", **_list_args(request)).body())


async def get_assistant(b: Backend, request: Request) -> Response:
    return _json(b.store.get("assistant", request.path_params["assistant_id"]))


async def update_assistant(b: Backend, request: Request) -> Response:
    b.store.get("assistant", request.path_params["assistant_id"])
    body = await _body(request, "ModifyAssistantRequest")
    _null_clears_metadata(body)
    body.pop("reasoning_effort", None)
    # read once the body is in: the stored assistant may have changed while it arrived
    asst = objects.revalidated("assistant", {**b.store.get("assistant", request.path_params["assistant_id"]),
                                             **body})
    if "model" in body:
        b.providers.for_model(asst["model"])
    return _json(b.store.update("assistant", asst))


async def delete_assistant(b: Backend, request: Request) -> Response:
    object_id = request.path_params["assistant_id"]
    b.store.delete("assistant", object_id)
    return _json({"id": object_id, "object": "assistant.deleted", "deleted": True})


# -- threads and messages -------------------------------------------------------------------------

def _message(thread_id: str, m: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A new message from checked request parameters, not stored; `prefix` is where the request gave it."""
    content = _content(m["content"], f"{prefix}.content" if prefix else "content")
    return objects.message(thread_id, m["role"], content, metadata=m.get("metadata"),
                           attachments=m.get("attachments"), param=prefix)


def _messages(thread_id: str, messages: list[dict[str, Any]] | None, param: str) -> list[dict[str, Any]]:
    """New messages from a checked request's list of them, not stored."""
    return [_message(thread_id, m, f"{param}[{i}]") for i, m in enumerate(messages or [])]


def _insert_messages(b: Backend, thread_id: str, messages: list[dict[str, Any]]) -> None:
    for msg in messages:
        b.store.insert("message", msg, parent=thread_id)


def _thread(body: dict[str, Any], param: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new thread and its messages from checked create parameters, not stored."""
    thread = objects.thread(body, param=param)
    return thread, _messages(thread["id"], body.get("messages"), f"{param}.messages" if param else "messages")


async def create_thread(b: Backend, request: Request) -> Response:
    thread, messages = _thread(await _body(request, "CreateThreadRequest"))
    with b.store.transaction():
        b.store.insert("thread", thread)
        _insert_messages(b, thread["id"], messages)
    return _json(thread)


async def get_thread(b: Backend, request: Request) -> Response:
    return _json(b.store.get("thread", request.path_params["thread_id"]))


async def update_thread(b: Backend, request: Request) -> Response:
    b.store.get("thread", request.path_params["thread_id"])
    body = await _body(request, "ModifyThreadRequest")
    _null_clears_metadata(body)
    thread = objects.revalidated("thread", {**b.store.get("thread", request.path_params["thread_id"]), **body})
    return _json(b.store.update("thread", thread))


async def delete_thread(b: Backend, request: Request) -> Response:
    object_id = request.path_params["thread_id"]
    active = b.store.private(object_id).get("active_run")
    if active:
        b.executor.stop(active)  # nothing of the run may land under a deleted thread
    b.store.delete("thread", object_id)
    return _json({"id": object_id, "object": "thread.deleted", "deleted": True})


def _active_run(b: Backend, thread_id: str) -> str | None:
    run_id = b.store.private(thread_id).get("active_run")
    if run_id is None:
        return None
    return run_id if b.executor.refresh(b.store.get("run", run_id))["status"] in ACTIVE_RUN_STATUSES else None


async def create_message(b: Backend, request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    b.store.get("thread", thread_id)
    body = await _body(request, "CreateMessageRequest")
    b.store.get("thread", thread_id)  # still there once the body is in
    active = _active_run(b, thread_id)
    if active:
        raise invalid(f"Can't add messages to {thread_id} while a run {active} is active.")
    return _json(b.store.insert("message", _message(thread_id, body), parent=thread_id))


async def list_messages(b: Backend, request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    b.store.get("thread", thread_id)
    page = b.store.list("message", parent=thread_id, run_id=request.query_params.get("run_id"),
                        **_list_args(request))
    return _json(page.body())


async def get_message(b: Backend, request: Request) -> Response:
    p = request.path_params
    return _json(b.store.get("message", p["message_id"], parent=p["thread_id"]))


async def update_message(b: Backend, request: Request) -> Response:
    p = request.path_params
    b.store.get("message", p["message_id"], parent=p["thread_id"])
    body = await _body(request, "ModifyMessageRequest")
    _null_clears_metadata(body)
    msg = objects.revalidated("message", {**b.store.get("message", p["message_id"], parent=p["thread_id"]), **body})
    return _json(b.store.update("message", msg))


async def delete_message(b: Backend, request: Request) -> Response:
    p = request.path_params
    b.store.get("message", p["message_id"], parent=p["thread_id"])
    b.store.delete("message", p["message_id"])
    return _json({"id": p["message_id"], "object": "thread.message.deleted", "deleted": True})


# -- runs -----------------------------------------------------------------------------------------

def _run_response(b: Backend, run: dict[str, Any]) -> Response:
    return JSONResponse(run, headers={"openai-poll-after-ms": str(b.settings.poll_after_ms)})


async def _sse(queue: Any) -> AsyncIterator[bytes]:
    while True:
        item = await queue.get()
        if item is None:
            break
        event, payload = item
        yield f"event: {event}\ndata: {payload}\n\n".encode()
    yield b"event: done\ndata: [DONE]\n\n"


def _stream(queue: Any) -> Response:
    return StreamingResponse(_sse(queue), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


def _assistant_of(b: Backend, body: dict[str, Any]) -> dict[str, Any]:
    return b.store.get("assistant", body["assistant_id"])


def _run(b: Backend, thread_id: str, asst: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A new run from checked create parameters, not stored."""
    _check_tool_choice(body, body["tools"] if body.get("tools") is not None else asst.get("tools", []))
    if body.get("model"):
        b.providers.for_model(body["model"])
    return objects.run(thread_id, asst, body)  # 400 for what the SDK type refuses


def _start_run(b: Backend, run: dict[str, Any], messages: list[dict[str, Any]], *, stream: bool,
               thread: dict[str, Any] | None = None) -> Response:
    """Store a checked run (with the messages it adds, and its new thread when given) and start it."""
    thread_id = run["thread_id"]
    with b.store.transaction():  # all of it, or nothing
        if thread is not None:
            b.store.insert("thread", thread)
        _insert_messages(b, thread_id, messages)
        b.store.insert("run", run, parent=thread_id)
        thread_private = b.store.private(thread_id)
        thread_private["active_run"] = run["id"]
        b.store.set_private("thread", thread_id, thread_private)
    queue = b.executor.listen(run["id"]) if stream else None
    b.executor.start(run, created=True, thread=thread)
    return _stream(queue) if stream else _run_response(b, run)


async def create_run(b: Backend, request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    b.store.get("thread", thread_id)
    body = await _body(request, "CreateRunRequest")
    stream = bool(body.pop("stream", None))
    asst = _assistant_of(b, body)
    run = _run(b, thread_id, asst, body)
    messages = _messages(thread_id, body.get("additional_messages"), "additional_messages")
    b.store.get("thread", thread_id)  # still there once the body is in
    active = _active_run(b, thread_id)
    if active:
        raise invalid(f"Thread {thread_id} already has an active run {active}.")
    return _start_run(b, run, messages, stream=stream)


async def create_thread_and_run(b: Backend, request: Request) -> Response:
    body = await _body(request, "CreateThreadAndRunRequest")
    stream = bool(body.pop("stream", None))
    asst = _assistant_of(b, body)
    thread_params = body.pop("thread", None) or {}
    thread, messages = _thread(thread_params, "thread")
    body.pop("tool_resources", None)
    run = _run(b, thread["id"], asst, body)
    return _start_run(b, run, messages, stream=stream, thread=thread)


async def list_runs(b: Backend, request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    b.store.get("thread", thread_id)
    page = b.store.list("run", parent=thread_id, **_list_args(request))
    page.data = [b.executor.refresh(run) for run in page.data]
    return _json(page.body())


def _get_run(b: Backend, request: Request) -> dict[str, Any]:
    p = request.path_params
    return b.executor.refresh(b.store.get("run", p["run_id"], parent=p["thread_id"]))


async def get_run(b: Backend, request: Request) -> Response:
    return _run_response(b, _get_run(b, request))


async def update_run(b: Backend, request: Request) -> Response:
    _get_run(b, request)
    body = await _body(request, "ModifyRunRequest")
    _null_clears_metadata(body)
    # read once the body is in: the run may have moved on while it arrived, and its status must stand
    run = objects.revalidated("run", {**_get_run(b, request), **body})
    return _run_response(b, b.store.update("run", run))


async def cancel_run(b: Backend, request: Request) -> Response:
    _get_run(b, request)
    await _body(request, "")  # no parameters, but a body is read within the limits like every other
    return _run_response(b, b.executor.cancel(_get_run(b, request)))


async def submit_tool_outputs(b: Backend, request: Request) -> Response:
    _get_run(b, request)
    body = await _body(request, "SubmitToolOutputsRunRequest")
    outputs = body["tool_outputs"]
    stream = bool(body.get("stream"))
    run = _get_run(b, request)  # as it is once the body is in
    queue = b.executor.listen(run["id"]) if stream else None
    try:
        run = b.executor.submit_tool_outputs(run, outputs)
    except APIError:
        if queue is not None:
            b.executor.unlisten(run["id"])
        raise
    b.executor.start(run, created=False)
    return _stream(queue) if stream else _run_response(b, run)


async def list_run_steps(b: Backend, request: Request) -> Response:
    run = _get_run(b, request)
    page = b.store.list("run_step", parent=run["thread_id"], run_id=run["id"], **_list_args(request))
    return _json(page.body())


async def get_run_step(b: Backend, request: Request) -> Response:
    run = _get_run(b, request)
    step = b.store.get("run_step", request.path_params["step_id"], parent=run["thread_id"])
    if step["run_id"] != run["id"]:
        raise APIError(404, f"No run step found with id '{step['id']}'.")
    return _json(step)


# -- the app --------------------------------------------------------------------------------------

_ROUTES: list[tuple[str, str, Handler]] = [
    ("/assistants", "POST", create_assistant),
    ("/assistants", "GET", list_assistants),
    ("/assistants/{assistant_id}", "GET", get_assistant),
    ("/assistants/{assistant_id}", "POST", update_assistant),
    ("/assistants/{assistant_id}", "DELETE", delete_assistant),
    ("/threads", "POST", create_thread),
    ("/threads/runs", "POST", create_thread_and_run),
    ("/threads/{thread_id}", "GET", get_thread),
    ("/threads/{thread_id}", "POST", update_thread),
    ("/threads/{thread_id}", "DELETE", delete_thread),
    ("/threads/{thread_id}/messages", "POST", create_message),
    ("/threads/{thread_id}/messages", "GET", list_messages),
    ("/threads/{thread_id}/messages/{message_id}", "GET", get_message),
    ("/threads/{thread_id}/messages/{message_id}", "POST", update_message),
    ("/threads/{thread_id}/messages/{message_id}", "DELETE", delete_message),
    ("/threads/{thread_id}/runs", "POST", create_run),
    ("/threads/{thread_id}/runs", "GET", list_runs),
    ("/threads/{thread_id}/runs/{run_id}", "GET", get_run),
    ("/threads/{thread_id}/runs/{run_id}", "POST", update_run),
    ("/threads/{thread_id}/runs/{run_id}/cancel", "POST", cancel_run),
    ("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", "POST", submit_tool_outputs),
    ("/threads/{thread_id}/runs/{run_id}/steps", "GET", list_run_steps),
    ("/threads/{thread_id}/runs/{run_id}/steps/{step_id}", "GET", get_run_step),
]


def _error(exc: APIError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _endpoint(backend: Backend, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        if key:
            # a retry of a request already acted on gets the first answer, never a second effect
            remembered = f"POST {request.url.path} {key}"
            answered = backend.store.answer_for(remembered)
            if answered is not None:
                status, body = answered
                if status == 0:  # the first answer was a stream: it cannot be replayed
                    raise_conflict = APIError(409, f"The request with Idempotency-Key '{key}' was already "
                                                   "answered with a stream; it is not repeated.")
                    return JSONResponse(raise_conflict.body(), status_code=409)
                return Response(body, status_code=status, media_type="application/json")
        try:
            response = await handler(backend, request)
        except APIError as exc:
            return _error(exc)
        except ClientDisconnect:  # gone while sending its body: nobody is left to answer
            return _error(invalid("The client disconnected before the request body was complete."))
        except Exception:
            # a bug, not the client's fault: the API's 500 shape, the traceback only in the server's log
            _log.exception("%s %s failed", request.method, request.url.path)
            return _error(server_error())
        if key:
            streamed = isinstance(response, StreamingResponse)
            backend.store.remember_answer(remembered, 0 if streamed else response.status_code,
                                          "" if streamed else bytes(response.body).decode())
        return response

    async def endpoint(request: Request) -> Response:
        response = await answer(request)
        if response.headers.get("connection") != "close" and not await rest_is_dropped(request):
            response.headers["connection"] = "close"  # what is left of a huge unread body is never read
        return response

    return endpoint


def create_app(backend: Backend | None = None, prefix: str = "/v1") -> Any:
    """The ASGI app serving `backend` (a fresh in-memory one by default) under `prefix`.

    With `api_key` in the backend's settings, every request must carry it as a Bearer token.
    """
    backend = backend or Backend()
    routes = [
        Route(prefix + path, _endpoint(backend, handler), methods=[method], name=f"{method} {path}")
        for path, method, handler in _ROUTES
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        message = f"Invalid URL ({request.method} {shown(request.url.path, 200)})"
        return JSONResponse(APIError(404, message).body(), status_code=404)

    async def failed(request: Request, exc: Exception) -> Response:
        return _error(server_error())  # outside any route (the routes answer their own failures)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found, Exception: failed},
                    lifespan=lifespan)
    app.state.backend = backend
    if backend.settings.api_key:
        return BearerAuth(app, backend.settings.api_key)
    return app
