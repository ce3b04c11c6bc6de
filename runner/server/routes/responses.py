"""`/responses`: create (plain or streamed), retrieve (plain or replayed as a stream), delete, cancel, and the
input items of a response. The model call itself is the responder's (runner.server.responder)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from runner.server import responder
from runner.server import response_events as events
from runner.server.errors import APIError, invalid, shown
from runner.server.response_tools import shown_item, shown_response
from runner.server.routes.common import check_include, json_response, list_args, read_body

if TYPE_CHECKING:
    from runner.server.app import Backend
    from runner.server.routes import Handler


def _stream(chunks: AsyncIterator[bytes]) -> Response:
    return StreamingResponse(chunks, media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def create_response(b: Backend, request: Request) -> Response:
    body = await read_body(request, "CreateResponse")
    prepared = responder.prepare(b, body)
    if not body.get("stream"):
        return json_response(shown_response(await responder.complete(b, prepared), prepared.include))

    async def chunks() -> AsyncIterator[bytes]:
        started = list(events.numbered(events.start(prepared.response)))
        for event in started:
            yield events.sse(event)
        final = shown_response(await responder.complete(b, prepared), prepared.include)
        for event in events.numbered(events.finish(final), len(started)):
            yield events.sse(event)

    return _stream(chunks())


def _stored(b: Backend, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    response_id = request.path_params["response_id"]
    try:
        return b.store.get_with_private("response", response_id)
    except APIError:
        raise APIError(404, f"Response with id '{shown(response_id)}' not found.", param="response_id") from None


async def get_response(b: Backend, request: Request) -> Response:
    response, _ = _stored(b, request)
    response = shown_response(response, check_include(request))
    if request.query_params.get("stream") != "true":
        return json_response(response)
    after = request.query_params.get("starting_after")
    first = 0
    if after is not None:
        if not after.isdigit():
            raise invalid("Invalid value for 'starting_after': expected an event's sequence number (an integer, 0 or "
                          "more).", "starting_after")
        first = int(after) + 1 if len(after) < 10 else 10**9

    async def chunks() -> AsyncIterator[bytes]:
        for event in events.replay(response)[first:]:
            yield events.sse(event)

    return _stream(chunks())


async def delete_response(b: Backend, request: Request) -> Response:
    response, _ = _stored(b, request)
    b.store.delete("response", response["id"])
    return json_response({"id": response["id"], "object": "response.deleted", "deleted": True})


async def cancel_response(b: Backend, request: Request) -> Response:
    response, _ = _stored(b, request)
    await read_body(request, "")
    # only a background response can be cancelled, and this backend answers every response in the foreground
    raise invalid("Only responses created with background=true can be cancelled.")


async def list_input_items(b: Backend, request: Request) -> Response:
    _, private = _stored(b, request)
    include = check_include(request)
    args = list_args(request)
    given = [shown_item(item, include) for item in private.get("input", [])]
    ordered = given if args["order"] == "asc" else list(reversed(given))
    if args["after"] is not None:
        ids = [item["id"] for item in ordered]
        if args["after"] not in ids:
            raise invalid(f"No item found with id '{shown(args['after'])}' (used as `after`).", "after")
        ordered = ordered[ids.index(args["after"]) + 1:]
    data = ordered[: args["limit"]]
    return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > len(data)})


ROUTES: list[tuple[str, str, Handler]] = [
    ("/responses", "POST", create_response),
    ("/responses/{response_id}", "GET", get_response),
    ("/responses/{response_id}", "DELETE", delete_response),
    ("/responses/{response_id}/cancel", "POST", cancel_response),
    ("/responses/{response_id}/input_items", "GET", list_input_items),
]
