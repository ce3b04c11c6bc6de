"""A fake model upstream on loopback: the Responses, Chat Completions and Embeddings endpoints, in their real shapes.

Tests queue what it answers (bodies built here and checked against the SDK's own types), read back every
request it received, and stop it. `/embeddings` answers by itself when nothing is queued: deterministic vectors
(a hashed bag of words, synonyms folded: see `fake_embedding`). It runs uvicorn in a thread, so the code under test reaches it over
real HTTP exactly as it would reach api.openai.com or an Ollama server.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Answer = tuple[int, Any, dict[str, str]]  # status, JSON body (or the bytes to send), headers


def response_body(*, text: str | None = None, calls: list[tuple[str, dict[str, Any]]] | None = None,
                  model: str = "gpt-test", input_tokens: int = 11, output_tokens: int = 7,
                  incomplete: str | None = None) -> dict[str, Any]:
    """A Responses API `response` object with a text message or function calls."""
    from openai.types.responses import Response as ResponsesResponse

    output: list[dict[str, Any]] = []
    if text is not None:
        output.append({"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]})
    for i, (name, arguments) in enumerate(calls or []):
        output.append({"type": "function_call", "id": f"fc_{i}", "call_id": f"call_fake{i}", "name": name,
                       "arguments": json.dumps(arguments), "status": "completed"})
    body = {
        "id": "resp_fake", "object": "response", "created_at": 1_700_000_000, "model": model,
        "status": "incomplete" if incomplete else "completed", "output": output, "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None, "instructions": None,
        "metadata": {}, "parallel_tool_calls": True, "temperature": 1.0, "top_p": 1.0, "tool_choice": "auto",
        "tools": [],
        "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": input_tokens + output_tokens},
    }
    ResponsesResponse.model_validate(body)  # the fake must speak the real shape
    return body


def chat_body(*, text: str | None = None, calls: list[tuple[str, dict[str, Any]]] | None = None,
              model: str = "llama-test", prompt_tokens: int = 13, completion_tokens: int = 5,
              finish_reason: str | None = None) -> dict[str, Any]:
    """A Chat Completions `chat.completion` object with text or tool calls."""
    from openai.types.chat import ChatCompletion

    tool_calls = [{"id": f"call_chat{i}", "type": "function",
                   "function": {"name": name, "arguments": json.dumps(arguments)}}
                  for i, (name, arguments) in enumerate(calls or [])]
    body = {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "logprobs": None,
                     "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
                     "message": {"role": "assistant", "content": text, "tool_calls": tool_calls or None}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
    ChatCompletion.model_validate(body)
    return body


EMBEDDING_DIMENSIONS = 64
# words the fake embedder takes for one another, so a search by meaning finds what keywords miss
SYNONYMS = {"automobile": "car", "vehicle": "car", "sedan": "car", "cars": "car", "motorcar": "car",
            "feline": "cat", "kitten": "cat", "cats": "cat", "puppy": "dog", "hound": "dog", "dogs": "dog"}


def fake_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic stand-in for a model's embedding: each word (lower case, synonyms folded) adds 1 to the
    dimension its CRC-32 picks."""
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        vector[zlib.crc32(SYNONYMS.get(word, word).encode("utf-8")) % dimensions] += 1.0
    return vector


def embeddings_body(inputs: list[str], *, model: str = "embed-test",
                    dimensions: int = EMBEDDING_DIMENSIONS) -> dict[str, Any]:
    """A `create embedding` response: one fake embedding per input, in order."""
    from openai.types import CreateEmbeddingResponse

    tokens = sum(len(text.split()) for text in inputs)
    body = {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": fake_embedding(text, dimensions)}
                     for i, text in enumerate(inputs)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    CreateEmbeddingResponse.model_validate(body)
    return body


def embed_answer(body: dict[str, Any]) -> Answer:
    """What the fake answers an embeddings request with when nothing is queued."""
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    return 200, embeddings_body(texts, model=str(body.get("model") or "embed-test")), {}


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """The API's error envelope."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@dataclass
class Received:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    """Answers queued per path; records every request."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answers: dict[str, list[Answer | Callable[[dict[str, Any]], Answer]]] = field(default_factory=dict)
    delay: float = 0.0

    def queue(self, path: str, *answers: Answer | Callable[[dict[str, Any]], Answer]) -> None:
        """Answers for the next requests to `path` (`/responses`, `/chat/completions` or `/embeddings`), in
        order."""
        self.answers.setdefault(path, []).extend(answers)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies received at `path`."""
        return [r.body for r in self.received if r.path == path]

    async def _handle(self, request: Request) -> Response:
        path = request.url.path.removeprefix("/v1")
        body = json.loads(await request.body() or b"{}")
        self.received.append(Received(path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        pending = self.answers.get(path)
        if not pending and path == "/embeddings":
            pending = [embed_answer]
        if not pending:
            return JSONResponse(error_body(f"the fake upstream has no answer queued for {path}"), status_code=500)
        answer = pending.pop(0)
        status, payload, headers = answer(body) if callable(answer) else answer
        if isinstance(payload, bytes):  # a body sent as it is: an event stream, JSON no encoder would write
            return Response(payload, status_code=status, headers=headers,
                            media_type=headers.get("content-type", "application/json"))
        return JSONResponse(payload, status_code=status, headers=headers)


@contextmanager
def fake_upstream(port: int = 0) -> Iterator[FakeUpstream]:
    """Start a fake upstream on 127.0.0.1 (a free port unless given), yield it, stop it."""
    fake = FakeUpstream()
    app = Starlette(routes=[Route("/v1/responses", fake._handle, methods=["POST"]),
                            Route("/v1/chat/completions", fake._handle, methods=["POST"]),
                            Route("/v1/embeddings", fake._handle, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake upstream did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
