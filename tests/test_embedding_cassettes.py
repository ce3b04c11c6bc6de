"""The embedded backend's embedding endpoint, configured by RUNNER_EMBEDDINGS_*, goes through the conversation's
cassette like the model providers: a retrieval conversation recorded against a fake `/v1/embeddings` on loopback
replays offline, with the server gone and the network blocked; its key is in neither cassette nor results.

Specs cannot declare files yet, so the conversation is driven as the engine drives one: the client `open_client`
makes for the embedded backend, inside `recording`."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner
from fake_upstream import fake_upstream
from test_cassettes import block_network

from runner.cli import cli
from runner.engine.backend import BackendTarget, open_client, secret_values
from runner.record.cassettes import recording
from runner.spec.model import BackendConfig

KEY = "sk-embed-" + "c4" * 12
DOCS = {
    "car.txt": "A sedan with four doors and a diesel engine, serviced every spring.",
    "cat.txt": "A kitten sleeps most of the day and hunts mice at night.",
}


@pytest.fixture
def embedding_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNNER_EMBEDDINGS_MODEL", "embed-test")
    monkeypatch.setenv("RUNNER_EMBEDDINGS_API_KEY", KEY)


async def retrieval(client: openai.AsyncOpenAI, query: str) -> dict[str, Any]:
    """Files into a vector store, a search, and a run forced to search: what each found, by file name."""
    ids = {}
    for name, text in DOCS.items():
        ids[(await client.files.create(file=(name, text.encode(), "text/plain"), purpose="assistants")).id] = name
    store = await client.vector_stores.create()
    batch = await client.vector_stores.file_batches.create_and_poll(store.id, file_ids=list(ids), poll_interval_ms=10)
    assert batch.file_counts.completed == len(DOCS), batch
    found = await client.vector_stores.search(store.id, query=query)
    assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "file_search"}],
                                                    tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": query}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                         tool_choice={"type": "file_search"}, poll_interval_ms=10)
    assert run.status == "completed", run.last_error
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    call = next(s for s in steps.data if s.step_details.type == "tool_calls").step_details.tool_calls[0]
    return {"search": [(ids[hit.file_id], hit.score) for hit in found.data],
            "run": [(ids[hit.file_id], hit.score) for hit in call.file_search.results]}


def converse(cassette: Path, mode: str, query: str = "automobile") -> Any:
    """One retrieval conversation on a fresh embedded backend, its traffic through `cassette`."""
    target = BackendTarget(BackendConfig())

    async def main() -> Any:
        client = open_client(target, replaying=mode != "all")
        try:
            return await retrieval(client, query)
        finally:
            await client.close()

    with warnings.catch_warnings(), recording(cassette, mode, "specs/retrieval.yaml", secret_values(target)):
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.run(main())


def test_a_retrieval_conversation_replays_offline_from_its_cassette(tmp_path: Path, embedding_env: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cassette = tmp_path / "cassettes" / "retrieval.yaml"
    with fake_upstream() as fake:
        monkeypatch.setenv("RUNNER_EMBEDDINGS_BASE_URL", fake.url)
        recorded = converse(cassette, "once")
        sent = len(fake.bodies("/embeddings"))
    assert recorded["search"][0] == ("car.txt", pytest.approx(0.5))  # by meaning: no file holds the word
    assert recorded["run"][0] == ("car.txt", pytest.approx(0.5))
    text = cassette.read_text(encoding="utf-8")
    assert text.count("/v1/embeddings") == sent == 4  # the two files, then the query: the search's, the run's
    assert KEY not in text and "authorization" not in text.lower()

    no_network = block_network(monkeypatch)  # and the fake upstream is gone
    replayed = converse(cassette, "none")
    assert no_network == []
    assert replayed == recorded


def test_a_query_missing_from_the_cassette_fails_the_search_saying_so(tmp_path: Path, embedding_env: None,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cassette = tmp_path / "cassettes" / "retrieval.yaml"
    with fake_upstream() as fake:
        monkeypatch.setenv("RUNNER_EMBEDDINGS_BASE_URL", fake.url)
        converse(cassette, "once")
    block_network(monkeypatch)
    with pytest.raises(openai.APIStatusError) as caught:
        converse(cassette, "none", query="a kitten")
    message = caught.value.response.json()["error"]["message"]
    assert caught.value.status_code == 502
    assert message.startswith(f"The query could not be embedded: the embedding endpoint {fake.url} (model "
                              "embed-test): ReplayMismatch: replay: ")
    assert "/v1/embeddings" in message and "a kitten" in message


def test_the_embedding_key_is_a_secret_of_the_run(embedding_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_EMBEDDINGS_BASE_URL", "http://127.0.0.1:9/v1")
    assert secret_values(BackendTarget(BackendConfig()))["RUNNER_EMBEDDINGS_API_KEY"] == KEY


def test_embedding_settings_that_cannot_work_stop_the_run_before_it_starts(tmp_path: Path, embedding_env: None,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNNER_EMBEDDINGS_MODEL")
    (tmp_path / "hello.yaml").write_text("assistant: {model: echo}\nconversation: [{user: hi}]\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "hello.yaml", "--no-env-file"],
                                env={"RUNNER_EMBEDDINGS_BASE_URL": "http://127.0.0.1:9/v1"})
    assert result.exit_code == 2, result.output
    assert "hello.yaml: RUNNER_EMBEDDINGS_BASE_URL is set but RUNNER_EMBEDDINGS_MODEL is not" in result.output
