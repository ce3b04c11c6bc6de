"""Runs and their steps: `/threads/{thread_id}/runs` (streamed or not), `/threads/runs` (create the thread
and run it), cancel, tool outputs, and `/runs/{run_id}/steps`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from runner.server import objects
from runner.server.errors import APIError, invalid, shown
from runner.server.routes.common import (
    active_run,
    attach_files,
    check_attachments,
    check_references,
    check_tool_choice,
    insert_messages,
    json_response,
    list_args,
    make_vector_stores,
    new_messages,
    null_clears_metadata,
    read_body,
    thread_from,
)

if TYPE_CHECKING:
    from runner.server.app import Backend
    from runner.server.routes import Handler


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
    check_tool_choice(body, body["tools"] if body.get("tools") is not None else asst.get("tools", []))
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
        insert_messages(b, thread_id, messages)
        attach_files(b, thread_id, messages)
        if thread is not None:
            thread = b.store.get("thread", thread_id)  # as announced: with the stores its attachments made
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
    body = await read_body(request, "CreateRunRequest")
    stream = bool(body.pop("stream", None))
    asst = _assistant_of(b, body)
    run = _run(b, thread_id, asst, body)
    for i, message in enumerate(body.get("additional_messages") or []):
        check_attachments(b, message, f"additional_messages[{i}]")
    messages = new_messages(thread_id, body.get("additional_messages"), "additional_messages")
    b.store.get("thread", thread_id)  # still there once the body is in
    active = active_run(b, thread_id)
    if active:
        raise invalid(f"Thread {thread_id} already has an active run {active}.")
    return _start_run(b, run, messages, stream=stream)


async def create_thread_and_run(b: Backend, request: Request) -> Response:
    body = await read_body(request, "CreateThreadAndRunRequest")
    stream = bool(body.pop("stream", None))
    asst = _assistant_of(b, body)
    thread_params = body.pop("thread", None) or {}
    check_references(b, thread_params, "thread")
    check_references(b, {"tool_resources": body.pop("tool_resources", None)})
    make_vector_stores(b, thread_params)
    thread, messages = thread_from(thread_params, "thread")
    run = _run(b, thread["id"], asst, body)
    return _start_run(b, run, messages, stream=stream, thread=thread)


async def list_runs(b: Backend, request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    b.store.get("thread", thread_id)
    page = b.store.list("run", parent=thread_id, **list_args(request))
    page.data = [b.executor.refresh(run) for run in page.data]
    return json_response(page.body())


def _get_run(b: Backend, request: Request) -> dict[str, Any]:
    p = request.path_params
    return b.executor.refresh(b.store.get("run", p["run_id"], parent=p["thread_id"]))


async def get_run(b: Backend, request: Request) -> Response:
    return _run_response(b, _get_run(b, request))


async def update_run(b: Backend, request: Request) -> Response:
    _get_run(b, request)
    body = await read_body(request, "ModifyRunRequest")
    null_clears_metadata(body)
    # read once the body is in: the run may have moved on while it arrived, and its status must stand
    run = objects.revalidated("run", {**_get_run(b, request), **body})
    return _run_response(b, b.store.update("run", run))


async def cancel_run(b: Backend, request: Request) -> Response:
    _get_run(b, request)
    await read_body(request, "")  # no parameters, but a body is read within the limits like every other
    return _run_response(b, b.executor.cancel(_get_run(b, request)))


async def submit_tool_outputs(b: Backend, request: Request) -> Response:
    _get_run(b, request)
    body = await read_body(request, "SubmitToolOutputsRunRequest")
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


SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"  # the one `include[]` value


def _included(b: Backend, request: Request, run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    """With `include[]` asking for it, the text of each file_search result (kept beside the run) in its step."""
    asked = request.query_params.getlist("include[]") + request.query_params.getlist("include")
    for value in asked:
        if value != SEARCH_CONTENT:
            raise invalid(f"Invalid value for 'include': '{shown(value)}'; the only one is '{SEARCH_CONTENT}'.",
                          "include")
    if not asked:
        return
    kept = b.store.private(run["id"]).get("results", {})
    for step in steps:
        for call in step["step_details"].get("tool_calls", []) if step["type"] == "tool_calls" else []:
            if call["type"] == "file_search" and call["id"] in kept:
                for result, content in zip(call["file_search"]["results"], kept[call["id"]], strict=False):
                    result["content"] = content


async def list_run_steps(b: Backend, request: Request) -> Response:
    run = _get_run(b, request)
    page = b.store.list("run_step", parent=run["thread_id"], run_id=run["id"], **list_args(request))
    _included(b, request, run, page.data)
    return json_response(page.body())


async def get_run_step(b: Backend, request: Request) -> Response:
    run = _get_run(b, request)
    step = b.store.get("run_step", request.path_params["step_id"], parent=run["thread_id"])
    if step["run_id"] != run["id"]:
        raise APIError(404, f"No run step found with id '{step['id']}'.")
    _included(b, request, run, [step])
    return json_response(step)


ROUTES: list[tuple[str, str, Handler]] = [
    ("/threads/runs", "POST", create_thread_and_run),
    ("/threads/{thread_id}/runs", "POST", create_run),
    ("/threads/{thread_id}/runs", "GET", list_runs),
    ("/threads/{thread_id}/runs/{run_id}", "GET", get_run),
    ("/threads/{thread_id}/runs/{run_id}", "POST", update_run),
    ("/threads/{thread_id}/runs/{run_id}/cancel", "POST", cancel_run),
    ("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", "POST", submit_tool_outputs),
    ("/threads/{thread_id}/runs/{run_id}/steps", "GET", list_run_steps),
    ("/threads/{thread_id}/runs/{run_id}/steps/{step_id}", "GET", get_run_step),
]
