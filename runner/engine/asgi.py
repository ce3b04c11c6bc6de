"""An httpx2 transport that carries requests to an ASGI app in-process and *streams* the responses.

httpx2's own ASGITransport buffers a response until the app returns, so a streamed run would deliver
every event at once at the end, and a run that hangs could not even be identified to cancel it. This
transport hands the response back as soon as its headers are sent and feeds the body as the app
produces it, exactly like a socket would, with no socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx2

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class _BodyStream(httpx2.AsyncByteStream):
    def __init__(self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None],
                 disconnected: asyncio.Event) -> None:
        self._chunks = chunks
        self._task = task
        self._disconnected = disconnected

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._chunks.get()
            if chunk is None:
                break
            yield chunk
        await self._task  # surfaces an exception the app raised after its last chunk

    async def aclose(self) -> None:
        self._disconnected.set()
        if not self._task.done():
            # the client stopped reading: end the app's side of the request, as a dropped connection would
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class StreamingASGITransport(httpx2.AsyncBaseTransport):
    """Send requests to an ASGI app in the same event loop; stream its responses."""

    def __init__(self, app: ASGIApp, client: tuple[str, int] = ("127.0.0.1", 123),
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.app = app
        self.client = client
        self.on_close = on_close  # no lifespan runs in-process: the owner's cleanup runs when the client closes

    async def aclose(self) -> None:
        """Close the app's side (the embedded backend) with the client."""
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            await on_close()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Run the app for one request and return as soon as the response starts."""
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        scope = {
            # spec 2.4: the app learns of a disconnect by cancellation (see _BodyStream.aclose), so Starlette
            # streams without a task group listening for it
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw], "scheme": request.url.scheme,
            "path": request.url.path, "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query, "server": (request.url.host, request.url.port),
            "client": self.client, "root_path": "",
        }
        loop = asyncio.get_running_loop()
        started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = loop.create_future()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        disconnected = asyncio.Event()
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if disconnected.is_set():  # as ASGI 2.4 asks of a server whose client has gone
                raise OSError("the client disconnected")
            if message["type"] == "http.response.start":
                started.set_result((message["status"], list(message.get("headers", []))))
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    chunks.put_nowait(message["body"])
                if not message.get("more_body", False):
                    chunks.put_nowait(None)

        async def run_app() -> None:
            await self.app(scope, receive, send)

        task: asyncio.Task[None] = loop.create_task(run_app())
        waiters: set[asyncio.Future[Any]] = {task, started}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            task.result()  # the app failed before answering: raise its exception here
            raise RuntimeError("the ASGI app returned without sending a response")
        status, headers = started.result()
        return httpx2.Response(status, headers=headers, stream=_BodyStream(chunks, task, disconnected),
                               request=request)
