"""`/assistants`: create, list, retrieve, update, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from runner.server import objects
from runner.server.routes.common import (
    check_references,
    json_response,
    list_args,
    make_vector_stores,
    null_clears_metadata,
    read_body,
)

if TYPE_CHECKING:
    from runner.server.app import Backend
    from runner.server.routes import Handler


async def create_assistant(b: Backend, request: Request) -> Response:
    body = await read_body(request, "CreateAssistantRequest")
    b.providers.for_model(body["model"])  # an unknown model is a 400 now, not a failed run later
    check_references(b, body)
    make_vector_stores(b, body)
    return json_response(b.store.insert("assistant", objects.assistant(body)))  # 400 for what the SDK type refuses


async def list_assistants(b: Backend, request: Request) -> Response:
    return json_response(b.store.list("assistant", **list_args(request)).body())


async def get_assistant(b: Backend, request: Request) -> Response:
    return json_response(b.store.get("assistant", request.path_params["assistant_id"]))


async def update_assistant(b: Backend, request: Request) -> Response:
    b.store.get("assistant", request.path_params["assistant_id"])
    body = await read_body(request, "ModifyAssistantRequest")
    null_clears_metadata(body)
    body.pop("reasoning_effort", None)
    check_references(b, body)
    # read once the body is in: the stored assistant may have changed while it arrived
    asst = objects.revalidated("assistant", {**b.store.get("assistant", request.path_params["assistant_id"]),
                                             **body})
    if "model" in body:
        b.providers.for_model(asst["model"])
    return json_response(b.store.update("assistant", asst))


async def delete_assistant(b: Backend, request: Request) -> Response:
    object_id = request.path_params["assistant_id"]
    b.store.delete("assistant", object_id)
    return json_response({"id": object_id, "object": "assistant.deleted", "deleted": True})


ROUTES: list[tuple[str, str, Handler]] = [
    ("/assistants", "POST", create_assistant),
    ("/assistants", "GET", list_assistants),
    ("/assistants/{assistant_id}", "GET", get_assistant),
    ("/assistants/{assistant_id}", "POST", update_assistant),
    ("/assistants/{assistant_id}", "DELETE", delete_assistant),
]
