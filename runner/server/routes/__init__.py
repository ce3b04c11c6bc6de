"""The backend's HTTP surface, one module per resource as the SDK's `resources/` are split; what the routes
share (reading and checking a request, building messages) lives in `common`.

Each module lists its `ROUTES` as (path, method, handler); a handler takes the backend and the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from runner.server.app import Backend

Handler = Callable[["Backend", Request], Awaitable[Response]]


def all_routes() -> list[tuple[str, str, Handler]]:
    """Every route of the backend, as (path, method, handler); `/threads/runs` before `/threads/{thread_id}`."""
    from runner.server.routes import (
        assistants,
        conversations,
        files,
        messages,
        responses,
        runs,
        threads,
        vector_stores,
    )

    return [*assistants.ROUTES, *runs.ROUTES[:1], *threads.ROUTES, *messages.ROUTES, *runs.ROUTES[1:],
            *files.ROUTES, *vector_stores.ROUTES, *conversations.ROUTES,
            *responses.ROUTES]
