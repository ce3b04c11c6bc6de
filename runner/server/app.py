"""The Assistants-compatible HTTP surface of the built-in backend (a Starlette ASGI app).

The same app is reached in-process by the runner (through httpx2's ASGI transport, no socket) and
served over HTTP by `runner serve`. Routes parse and check the request, then hand over to the store
and the run executor; they hold no state of their own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openai.types.beta import (
    assistant_create_params,
    assistant_update_params,
    thread_create_and_run_params,
    thread_create_params,
    thread_update_params,
)
from openai.types.beta.threads import (
    message_create_params,
    message_update_params,
    run_create_params,
    run_submit_tool_outputs_params,
    run_update_params,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runner.server import objects
from runner.server.auth import BearerAuth
from runner.server.errors import APIError, invalid
from runner.server.executor import ACTIVE_RUN_STATUSES, RunExecutor
from runner.server.providers import LiveSettings, ProviderSet
from runner.server.store import Store

Handler = Callable[["Backend", Request], Awaitable[Response]]


def _keys(params: Any) -> frozenset[str]:
    return frozenset(params.__required_keys__ | params.__optional_keys__)


# request parameters each endpoint accepts, from the SDK's own parameter types
_ASSISTANT_CREATE = _keys(assistant_create_params.AssistantCreateParams)
_ASSISTANT_UPDATE = _keys(assistant_update_params.AssistantUpdateParams)
_THREAD_CREATE = _keys(thread_create_params.ThreadCreateParams)
_THREAD_UPDATE = _keys(thread_update_params.ThreadUpdateParams)
_MESSAGE_CREATE = _keys(message_create_params.MessageCreateParams)
_MESSAGE_UPDATE = _keys(message_update_params.MessageUpdateParams) - {"thread_id"}
_RUN_CREATE = _keys(run_create_params.RunCreateParamsBase) | {"stream"}
_RUN_UPDATE = _keys(run_update_params.RunUpdateParams) - {"thread_id"}
_CREATE_AND_RUN = _keys(thread_create_and_run_params.ThreadCreateAndRunParamsBase) | {"stream"}
_MESSAGE_KEYS = frozenset({"role", "content", "attachments", "metadata"})
_TOOL_OUTPUT_KEYS = frozenset({"tool_call_id", "output"})
_SUBMIT = _keys(run_submit_tool_outputs_params.RunSubmitToolOutputsParamsBase) - {"thread_id"} | {"stream"}


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

async def _body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    for key in body:
        if key not in allowed:
            raise invalid(f"Unrecognized request argument supplied: {key}", key)
    return body


def _reject_unknown(value: Any, allowed: frozenset[str], param: str) -> None:
    """400 unless `value` is an object whose keys are all `allowed` (nested parameters, like the API)."""
    if not isinstance(value, dict):
        raise invalid(f"Invalid type for '{param}': expected an object.", param)
    for key in value:
        if key not in allowed:
            raise invalid(f"Unrecognized request argument supplied: {param}.{key}", f"{param}.{key}")


def _check_type(body: dict[str, Any], key: str, kind: type | tuple[type, ...], *, required: bool = False) -> None:
    if key not in body or body[key] is None:
        if required:
            raise invalid(f"Missing required parameter: '{key}'.", key)
        return
    if not isinstance(body[key], kind) or (kind is not bool and isinstance(body[key], bool)):
        raise invalid(f"Invalid type for '{key}'.", key)


def _flag(value: Any, param: str) -> bool:
    """A boolean parameter: true, false or absent (a string like "false" is a 400, not truthy)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise invalid(f"Invalid type for '{param}': expected a boolean.", param)


def _check_metadata(body: dict[str, Any], param: str = "metadata") -> None:
    if "metadata" in body and body["metadata"] is None:
        body["metadata"] = {}  # null clears it, as the API answers with {}
    metadata = body.get("metadata")
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise invalid("metadata must be an object with at most 16 keys.", param)
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise invalid("metadata keys are at most 64 characters, values strings of at most 512.", param)


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid("Invalid type for 'tools'.", "tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") not in ("function", "code_interpreter", "file_search"):
            raise invalid(f"Invalid value for 'tools[{i}].type'.", f"tools[{i}].type")
        if tool["type"] == "function" and not isinstance(tool.get("function", {}).get("name"), str):
            raise invalid(f"Missing required parameter: 'tools[{i}].function.name'.", f"tools[{i}].function.name")


def _check_run_options(body: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    """400 for run options the API would refuse (token budgets, truncation, tool choice)."""
    for key in ("max_prompt_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise invalid(f"Invalid '{key}': expected a positive integer.", key)
    truncation = body.get("truncation_strategy")
    if truncation is not None:
        kind = truncation.get("type") if isinstance(truncation, dict) else None
        if kind not in ("auto", "last_messages"):
            raise invalid("Invalid 'truncation_strategy.type': expected 'auto' or 'last_messages'.",
                          "truncation_strategy.type")
        last = truncation.get("last_messages")
        if kind == "last_messages" and (not isinstance(last, int) or last < 1):
            raise invalid("'truncation_strategy.last_messages' must be a positive integer.",
                          "truncation_strategy.last_messages")
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none", "required"):
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("file_search", "code_interpreter"):
        # accepted and stored; the model is not steered by it until the backend executes these tools
        if not any(t.get("type") == kind for t in tools):
            raise invalid(f"Invalid value for 'tool_choice': the run's tools have no {kind} tool.", "tool_choice")
        return
    if kind != "function" or not isinstance(choice.get("function"), dict):
        raise invalid("Invalid 'tool_choice'.", "tool_choice")
    name = choice["function"].get("name")
    if name not in {t["function"]["name"] for t in tools if t.get("type") == "function"}:
        raise invalid(f"tool_choice names the function '{name}', which is not among the run's tools.",
                      "tool_choice.function.name")


def _content(content: Any, param: str) -> list[dict[str, Any]]:
    """Message content from a request (a string or text parts) in the stored form."""
    if isinstance(content, str):
        return objects.text_content(content)
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid("Only text content parts are supported by this backend.", f"{param}[{i}]")
            parts.extend(objects.text_content(part["text"]))
        return parts
    if content is None:
        raise invalid(f"Missing required parameter: '{param}'.", param)
    raise invalid(f"Invalid type for '{param}'.", param)


def _list_args(request: Request, default_order: str = "desc") -> dict[str, Any]:
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise invalid("limit must be an integer", "limit") from None
    return {"limit": limit, "order": q.get("order", default_order), "after": q.get("after"),
            "before": q.get("before")}


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


# -- assistants -----------------------------------------------------------------------------------

async def create_assistant(b: Backend, request: Request) -> Response:
    body = await _body(request, _ASSISTANT_CREATE)
    _check_type(body, "model", str, required=True)
    for key in ("name", "description", "instructions"):
        _check_type(body, key, str)
    _check_metadata(body)
    _check_tools(body)
    b.providers.for_model(body["model"])  # an unknown model is a 400 now, not a failed run later
    return _json(b.store.insert("assistant", objects.assistant(body)))  # 400 for what the SDK type refuses


async def list_assistants(b: Backend, request: Request) -> Response:
    return _json(b.store.list("assistant", **_list_args(request)).body())


async def get_assistant(b: Backend, request: Request) -> Response:
    return _json(b.store.get("assistant", request.path_params["assistant_id"]))


async def update_assistant(b: Backend, request: Request) -> Response:
    b.store.get("assistant", request.path_params["assistant_id"])
    body = await _body(request, _ASSISTANT_UPDATE)
    _check_metadata(body)
    _check_tools(body)
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
    """A new message from request parameters, checked but not stored; `prefix` is where the request gave it."""

    def param(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    if m.get("role") is None:
        raise invalid(f"Missing required parameter: '{param('role')}'.", param("role"))
    if m["role"] not in ("user", "assistant"):
        raise invalid(f"Invalid value for '{param('role')}': expected 'user' or 'assistant'.", param("role"))
    _check_metadata(m, param("metadata"))
    return objects.message(thread_id, m["role"], _content(m.get("content"), param("content")),
                           metadata=m.get("metadata"), attachments=m.get("attachments"), param=prefix)


def _messages(thread_id: str, messages: Any, param: str) -> list[dict[str, Any]]:
    """New messages from a request's list of them, checked but not stored."""
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise invalid(f"Invalid type for '{param}'.", param)
    built = []
    for i, m in enumerate(messages):
        _reject_unknown(m, _MESSAGE_KEYS, f"{param}[{i}]")
        built.append(_message(thread_id, m, f"{param}[{i}]"))
    return built


def _insert_messages(b: Backend, thread_id: str, messages: list[dict[str, Any]]) -> None:
    for msg in messages:
        b.store.insert("message", msg, parent=thread_id)


def _thread(body: dict[str, Any], param: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new thread and its messages from create parameters, checked but not stored."""
    _check_metadata(body, f"{param}.metadata" if param else "metadata")
    thread = objects.thread(body, param=param)
    return thread, _messages(thread["id"], body.get("messages"), f"{param}.messages" if param else "messages")


async def create_thread(b: Backend, request: Request) -> Response:
    thread, messages = _thread(await _body(request, _THREAD_CREATE))
    with b.store.transaction():
        b.store.insert("thread", thread)
        _insert_messages(b, thread["id"], messages)
    return _json(thread)


async def get_thread(b: Backend, request: Request) -> Response:
    return _json(b.store.get("thread", request.path_params["thread_id"]))


async def update_thread(b: Backend, request: Request) -> Response:
    b.store.get("thread", request.path_params["thread_id"])
    body = await _body(request, _THREAD_UPDATE)
    _check_metadata(body)
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
    body = await _body(request, _MESSAGE_CREATE - {"thread_id"})
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
    body = await _body(request, _MESSAGE_UPDATE)
    _check_metadata(body)
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
    assistant_id = body.get("assistant_id")
    if not isinstance(assistant_id, str):
        raise invalid("Missing required parameter: 'assistant_id'.", "assistant_id")
    return b.store.get("assistant", assistant_id)


def _run(b: Backend, thread_id: str, asst: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A new run from create parameters, checked but not stored."""
    for key in ("model", "instructions", "additional_instructions"):
        _check_type(body, key, str)
    _check_metadata(body)
    _check_tools(body)
    _check_run_options(body, body["tools"] if body.get("tools") is not None else asst.get("tools", []))
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
    body = await _body(request, _RUN_CREATE - {"thread_id", "include"})
    stream = _flag(body.pop("stream", None), "stream")
    asst = _assistant_of(b, body)
    run = _run(b, thread_id, asst, body)
    messages = _messages(thread_id, body.get("additional_messages"), "additional_messages")
    b.store.get("thread", thread_id)  # still there once the body is in
    active = _active_run(b, thread_id)
    if active:
        raise invalid(f"Thread {thread_id} already has an active run {active}.")
    return _start_run(b, run, messages, stream=stream)


async def create_thread_and_run(b: Backend, request: Request) -> Response:
    body = await _body(request, _CREATE_AND_RUN)
    stream = _flag(body.pop("stream", None), "stream")
    asst = _assistant_of(b, body)
    thread_params = body.pop("thread", None) or {}
    _reject_unknown(thread_params, _THREAD_CREATE, "thread")
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
    body = await _body(request, _RUN_UPDATE)
    _check_metadata(body)
    # read once the body is in: the run may have moved on while it arrived, and its status must stand
    run = objects.revalidated("run", {**_get_run(b, request), **body})
    return _run_response(b, b.store.update("run", run))


async def cancel_run(b: Backend, request: Request) -> Response:
    return _run_response(b, b.executor.cancel(_get_run(b, request)))


async def submit_tool_outputs(b: Backend, request: Request) -> Response:
    _get_run(b, request)
    body = await _body(request, _SUBMIT)
    outputs = body.get("tool_outputs")
    if not isinstance(outputs, list):
        raise invalid("Missing required parameter: 'tool_outputs'.", "tool_outputs")
    for i, item in enumerate(outputs):
        _reject_unknown(item, _TOOL_OUTPUT_KEYS, f"tool_outputs[{i}]")
        for key in _TOOL_OUTPUT_KEYS:
            if item.get(key) is not None and not isinstance(item[key], str):
                raise invalid(f"Invalid type for 'tool_outputs[{i}].{key}': expected a string.",
                              f"tool_outputs[{i}].{key}")
    stream = _flag(body.get("stream"), "stream")
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


def _endpoint(backend: Backend, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
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
            return JSONResponse(exc.body(), status_code=exc.status)
        if key:
            streamed = isinstance(response, StreamingResponse)
            backend.store.remember_answer(remembered, 0 if streamed else response.status_code,
                                          "" if streamed else bytes(response.body).decode())
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
        message = f"Invalid URL ({request.method} {request.url.path})"
        return JSONResponse(APIError(404, message).body(), status_code=404)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan)
    app.state.backend = backend
    if backend.settings.api_key:
        return BearerAuth(app, backend.settings.api_key)
    return app
