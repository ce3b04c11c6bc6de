"""`/threads`: create (with its first messages), retrieve, update, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from runner.server import objects
from runner.server.routes.common import (
    attach_files,
    check_references,
    insert_messages,
    json_response,
    make_vector_stores,
    null_clears_metadata,
    read_body,
    thread_from,
)

if TYPE_CHECKING:
    from runner.server.app import Backend
    from runner.server.routes import Handler


async def create_thread(b: Backend, request: Request) -> Response:
    body = await read_body(request, "CreateThreadRequest")
    check_references(b, body)
    make_vector_stores(b, body)
    thread, messages = thread_from(body)
    with b.store.transaction():
        b.store.insert("thread", thread)
        insert_messages(b, thread["id"], messages)
        attach_files(b, thread["id"], messages)
    return json_response(b.store.get("thread", thread["id"]))


async def get_thread(b: Backend, request: Request) -> Response:
    return json_response(b.store.get("thread", request.path_params["thread_id"]))


async def update_thread(b: Backend, request: Request) -> Response:
    b.store.get("thread", request.path_params["thread_id"])
    body = await read_body(request, "ModifyThreadRequest")
    null_clears_metadata(body)
    check_references(b, body)
    thread = objects.revalidated("thread", {**b.store.get("thread", request.path_params["thread_id"]), **body})
    return json_response(b.store.update("thread", thread))


async def delete_thread(b: Backend, request: Request) -> Response:
    object_id = request.path_params["thread_id"]
    active = b.store.private(object_id).get("active_run")
    if active:
        b.executor.stop(active)  # nothing of the run may land under a deleted thread
    b.store.delete("thread", object_id)
    if b.code is not None:
        await b.code.forget(object_id)  # its code session, and the files in its /mnt/data
    return json_response({"id": object_id, "object": "thread.deleted", "deleted": True})


ROUTES: list[tuple[str, str, Handler]] = [
    ("/threads", "POST", create_thread),
    ("/threads/{thread_id}", "GET", get_thread),
    ("/threads/{thread_id}", "POST", update_thread),
    ("/threads/{thread_id}", "DELETE", delete_thread),
]
