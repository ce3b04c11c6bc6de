"""The Assistants-compatible HTTP surface of the built-in backend (a Starlette ASGI app).

The same app is reached in-process by the runner (through httpx2's ASGI transport, no socket) and
served over HTTP by `runner serve`. The routes (runner/server/routes/, one module per resource) parse and
check the request, then hand over to the store and the run executor; they hold no state of their own.
This module holds the backend instance and what every route goes through: idempotency, errors, limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runner.server.auth import BearerAuth
from runner.server.blobs import BlobStore, folder_beside
from runner.server.body import rest_is_dropped
from runner.server.errors import APIError, invalid, server_error, shown
from runner.server.executor import RunExecutor
from runner.server.ingest import Ingestor
from runner.server.providers import LiveSettings, ModelError, ProviderSet
from runner.server.routes import Handler, all_routes
from runner.server.store import Store
from runner.server.tools.code_interpreter.limits import CodeLimits
from runner.server.tools.code_interpreter.tool import CodeInterpreter

if TYPE_CHECKING:
    from runner.server.tools.file_search.embeddings import Embedder, EmbeddingSettings

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
    embeddings: EmbeddingSettings | None = None  # file_search's embedder; default: keyword search only
    # the code interpreter's limits; None: code is never executed (the tool is stored, and not offered to models)
    code_interpreter: CodeLimits | None = None


class Backend:
    """One backend instance: its store, its providers, its embedder and its run executor."""

    def __init__(self, settings: BackendSettings | None = None) -> None:
        self.settings = settings or BackendSettings()
        self.store = Store(self.settings.db_path)
        self.blobs = BlobStore(folder_beside(self.settings.db_path))
        embeddings = self.settings.embeddings
        live = self.settings.live.with_secrets(embeddings.secrets()) if embeddings else self.settings.live
        # the embedding key joins the providers' secrets: kept out of what is stored and (runner serve) logged
        self.providers = ProviderSet(rules=self.settings.rules, force=self.settings.provider, live=live)
        self.embedder: Embedder | None = None
        if embeddings is not None:
            from runner.server.tools.file_search.embeddings import open_embedder

            self.embedder = open_embedder(embeddings, self.providers.redact)
        self.ingestor = Ingestor(self.store, self.blobs, self.embedder)
        self.code = (CodeInterpreter(self.store, self.blobs, self.settings.code_interpreter)
                     if self.settings.code_interpreter is not None else None)
        self.executor = RunExecutor(self.store, self.providers, search=self.search, ready=self.ingestor.settled_for,
                                    code=self.code)
        self.recovered = self.executor.recover()  # runs a previous process left in flight
        self._closed = False

    async def aclose(self) -> None:
        """Shut down: cancel the runs still executing (they end `cancelled`, not stranded), close the live
        providers' SDK clients that were created and the embedder, then the store. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.executor.shutdown()
            await self.ingestor.shutdown()
            if self.code is not None:
                await self.code.aclose()  # every session's processes and folders go with the backend
            if self.embedder is not None:
                await asyncio.to_thread(self.embedder.close)  # joins the embedder's thread: not on the loop
            for provider in self.providers.providers.values():
                client = getattr(provider, "_client", None)  # live providers create theirs on first use
                if client is not None:
                    await client.close()
        finally:
            self.store.close()
            self.blobs.close()

    def search(self, vector_store_ids: list[str], query: str, limit: int, threshold: float,
               filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The file_search tool's results (in its run step's shape, with their text as `content`, and the files'
        attributes) for those that pass `filters` (checked already); called in a worker thread, as it may embed
        the query."""
        from runner.server.tools.file_search.embeddings import EmbeddingError

        try:
            hits = self.ingestor.search(vector_store_ids, query, limit=limit, threshold=threshold, filters=filters)
        except EmbeddingError as exc:  # the run fails saying why, as a failed model call does
            raise ModelError(f"file_search could not rank by meaning: {exc}") from None
        return [{"file_id": hit["file_id"], "file_name": hit["filename"], "score": hit["score"],
                 "attributes": hit.get("attributes") or {}, "content": [{"type": "text", "text": hit["text"]}]}
                for hit in hits]

    def discard_unheld(self, sha: str) -> None:
        """Remove a blob that no file and no upload part holds any more."""
        if not self.store.holding("file", "sha256", sha) and not self.store.holding("upload_part", "sha256", sha):
            self.blobs.discard(sha)


# -- the app --------------------------------------------------------------------------------------

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
        for path, method, handler in all_routes()
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        message = f"Invalid URL ({request.method} {shown(request.url.path, 200)})"
        return JSONResponse(APIError(404, message).body(), status_code=404)

    async def failed(request: Request, exc: Exception) -> Response:
        return _error(server_error())  # outside any route (the routes answer their own failures)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        backend.ingestor.resume()  # files a stopped server left being indexed (their bytes are on disk)
        yield
        await backend.aclose()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found, Exception: failed},
                    lifespan=lifespan)
    app.state.backend = backend
    if backend.settings.api_key:
        return BearerAuth(app, backend.settings.api_key)
    return app
