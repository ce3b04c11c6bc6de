"""`/threads/{thread_id}/messages`: create, list, retrieve, update, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from runner.server import objects
from runner.server.errors import invalid
from runner.server.routes.common import (
    active_run,
    attach_files,
    check_attachments,
    json_response,
    list_args,
    new_message,
    null_clears_metadata,
    read_body,
)

if TYPE_CHECKING:
    from runner.server.app import Backend
    from runner.server.routes import Handler


async def create_message(b: Backend, request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    b.store.get("thread", thread_id)
    body = await read_body(request, "CreateMessageRequest")
    b.store.get("thread", thread_id)  # still there once the body is in
    check_attachments(b, body)
    active = active_run(b, thread_id)
    if active:
        raise invalid(f"Can't add messages to {thread_id} while a run {active} is active.")
    with b.store.transaction():
        message = b.store.insert("message", new_message(thread_id, body), parent=thread_id)
        attach_files(b, thread_id, [message])
    return json_response(message)


async def list_messages(b: Backend, request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    b.store.get("thread", thread_id)
    page = b.store.list("message", parent=thread_id, run_id=request.query_params.get("run_id"),
                        **list_args(request))
    return json_response(page.body())


async def get_message(b: Backend, request: Request) -> Response:
    p = request.path_params
    return json_response(b.store.get("message", p["message_id"], parent=p["thread_id"]))


async def update_message(b: Backend, request: Request) -> Response:
    p = request.path_params
    b.store.get("message", p["message_id"], parent=p["thread_id"])
    body = await read_body(request, "ModifyMessageRequest")
    null_clears_metadata(body)
    msg = objects.revalidated("message", {**b.store.get("message", p["message_id"], parent=p["thread_id"]), **body})
    return json_response(b.store.update("message", msg))


async def delete_message(b: Backend, request: Request) -> Response:
    p = request.path_params
    b.store.get("message", p["message_id"], parent=p["thread_id"])
    b.store.delete("message", p["message_id"])
    return json_response({"id": p["message_id"], "object": "thread.message.deleted", "deleted": True})


ROUTES: list[tuple[str, str, Handler]] = [
    ("/threads/{thread_id}/messages", "POST", create_message),
    ("/threads/{thread_id}/messages", "GET", list_messages),
    ("/threads/{thread_id}/messages/{message_id}", "GET", get_message),
    ("/threads/{thread_id}/messages/{message_id}", "POST", update_message),
    ("/threads/{thread_id}/messages/{message_id}", "DELETE", delete_message),
]
