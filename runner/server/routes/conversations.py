"""`/conversations`: create (with its first items), retrieve, update metadata, delete; and its `/items`: create,
list, retrieve, delete. A conversation's items are the context of the responses created in it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from runner.server import items, objects
from runner.server.errors import APIError, shown
from runner.server.response_tools import shown_item
from runner.server.routes.common import check_include, json_response, list_args, null_clears_metadata, read_body
from runner.server.store import Page

if TYPE_CHECKING:
    from runner.server.app import Backend
    from runner.server.routes import Handler


def conversation_of(b: Backend, conversation_id: str, param: str = "conversation_id") -> dict[str, Any]:
    """The stored conversation; 404 naming `param` when there is none."""
    try:
        return b.store.get("conversation", conversation_id)
    except APIError:
        raise APIError(404, f"Conversation with id '{shown(conversation_id)}' not found.", param=param) from None


def append_items(b: Backend, conversation_id: str, new: list[dict[str, Any]]) -> None:
    """Store items at the end of a conversation (inside the caller's transaction, when there is one)."""
    for item in new:
        b.store.insert("conversation_item", item, parent=conversation_id)


async def create_conversation(b: Backend, request: Request) -> Response:
    body = await read_body(request, "CreateConversationBody")
    new = items.from_input(body.get("items"), "items")
    conversation = objects.conversation(body.get("metadata"))
    with b.store.transaction():
        b.store.insert("conversation", conversation)
        append_items(b, conversation["id"], new)
    return json_response(conversation)


async def get_conversation(b: Backend, request: Request) -> Response:
    return json_response(conversation_of(b, request.path_params["conversation_id"]))


async def update_conversation(b: Backend, request: Request) -> Response:
    conversation_of(b, request.path_params["conversation_id"])
    body = await read_body(request, "UpdateConversationBody")
    null_clears_metadata(body)
    conversation = conversation_of(b, request.path_params["conversation_id"])
    return json_response(b.store.update("conversation", {**conversation, "metadata": body["metadata"]}))


async def delete_conversation(b: Backend, request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    conversation_of(b, conversation_id)
    b.store.delete("conversation", conversation_id)  # and its items
    return json_response({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


async def create_items(b: Backend, request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    conversation_of(b, conversation_id)
    include = check_include(request)
    body = await read_body(request, "CreateConversationItemsRequest")
    new = items.from_input(body["items"], "items")
    with b.store.transaction():
        conversation_of(b, conversation_id)  # still there once the body is in
        append_items(b, conversation_id, new)
    return json_response(Page([shown_item(item, include) for item in new], has_more=False).body())


async def list_items(b: Backend, request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    conversation_of(b, conversation_id)
    include = check_include(request)
    args = list_args(request)
    args.pop("before")  # the API's item lists page forwards only
    page = b.store.list("conversation_item", parent=conversation_id, **args)
    page.data = [shown_item(item, include) for item in page.data]
    return json_response(page.body())


def _item(b: Backend, request: Request) -> dict[str, Any]:
    p = request.path_params
    conversation_of(b, p["conversation_id"])
    try:
        return b.store.get("conversation_item", p["item_id"], parent=p["conversation_id"])
    except APIError:
        raise APIError(404, f"Item with id '{shown(p['item_id'])}' not found.", param="item_id") from None


async def get_item(b: Backend, request: Request) -> Response:
    include = check_include(request)
    return json_response(shown_item(_item(b, request), include))


async def delete_item(b: Backend, request: Request) -> Response:
    item = _item(b, request)
    b.store.delete("conversation_item", item["id"])
    return json_response(conversation_of(b, request.path_params["conversation_id"]))  # the API answers so


ROUTES: list[tuple[str, str, Handler]] = [
    ("/conversations", "POST", create_conversation),
    ("/conversations/{conversation_id}", "GET", get_conversation),
    ("/conversations/{conversation_id}", "POST", update_conversation),
    ("/conversations/{conversation_id}", "DELETE", delete_conversation),
    ("/conversations/{conversation_id}/items", "POST", create_items),
    ("/conversations/{conversation_id}/items", "GET", list_items),
    ("/conversations/{conversation_id}/items/{item_id}", "GET", get_item),
    ("/conversations/{conversation_id}/items/{item_id}", "DELETE", delete_item),
]
