"""The Vector stores API, driven by the official SDK in-process and over HTTP: stores, their files and batches
indexed in the background, counts and statuses, search with filters; shapes checked with the SDK's types and,
when the shared folder is beside the repo, the reference schemas."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from test_server_files import _reference_check, _with_client

from runner.server.app import Backend

DOCS = {
    "tides.md": "# Tides\n\nTides are caused by the gravitational pull of the moon and the sun on the oceans.\n",
    "bread.txt": "To bake sourdough bread you need flour, water, salt and a lively starter culture.\n",
    "volcano.html": "<html><body><h1>Volcanoes</h1><p>Magma rises through the crust and erupts as lava."
                    "</p><script>alert('no')</script></body></html>",
}


async def _upload(client: openai.AsyncOpenAI, name: str, text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return (await client.files.create(file=(name, data, "application/octet-stream"), purpose="assistants")).id


def test_a_store_made_with_files_indexes_them_and_searches_them() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        ids = {name: await _upload(client, name, text) for name, text in DOCS.items()}
        store = await client.vector_stores.create(name="knowledge", file_ids=list(ids.values()),
                                                  metadata={"team": "docs"})
        _reference_check("VectorStoreObject", store.model_dump(mode="json", exclude_unset=True))
        assert store.file_counts.total == 3
        await backend.ingestor.settled()
        store = await client.vector_stores.retrieve(store.id)
        assert store.status == "completed" and store.file_counts.completed == 3 and store.usage_bytes > 0
        files = await client.vector_stores.files.list(store.id)
        assert sorted(f.id for f in files.data) == sorted(ids.values())
        _reference_check("ListVectorStoreFilesResponse", files.model_dump(mode="json", exclude_unset=True))
        found = await client.vector_stores.search(store.id, query="what causes the tides?", max_num_results=2)
        raw = await client._client.post(f"/vector_stores/{store.id}/search", json={"query": "tides"})
        _reference_check("VectorStoreSearchResultsPage", raw.json())
        assert found.data[0].file_id == ids["tides.md"] and found.data[0].filename == "tides.md"
        assert 0 <= found.data[0].score <= 1 and "moon" in found.data[0].content[0].text
        content = await client.vector_stores.files.content(ids["volcano.html"], vector_store_id=store.id)
        text = " ".join(part.text or "" for part in content.data)
        assert "Magma rises" in text and "alert" not in text  # scripts are not text

    _with_client(test)


def test_the_sdks_upload_and_poll_and_create_and_poll_work(tmp_path: Path) -> None:
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store = await client.vector_stores.create(name="empty")
        batch = await client.vector_stores.file_batches.upload_and_poll(
            store.id, files=[(tmp_path / name).open("rb") for name in DOCS], poll_interval_ms=10)
        _reference_check("VectorStoreFileBatchObject", batch.model_dump(mode="json", exclude_unset=True))
        assert batch.status == "completed" and batch.file_counts.completed == 3
        in_batch = await client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
        assert len(in_batch.data) == 3
        extra = await _upload(client, "extra.txt", "Penguins live in the southern hemisphere.")
        one = await client.vector_stores.files.create_and_poll(file_id=extra, vector_store_id=store.id,
                                                              attributes={"topic": "birds", "year": 2024},
                                                              poll_interval_ms=10)
        _reference_check("VectorStoreFileObject", one.model_dump(mode="json", exclude_unset=True))
        assert one.status == "completed" and one.attributes == {"topic": "birds", "year": 2024}
        assert one.chunking_strategy is not None and one.chunking_strategy.type == "static"
        assert (await client.vector_stores.retrieve(store.id)).file_counts.completed == 4

    _with_client(test)


def test_search_filters_on_attributes_and_honours_the_threshold() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store = await client.vector_stores.create(name="filtered")
        for year, text in ((2023, "The 2023 report on rainfall."), (2025, "The 2025 report on rainfall.")):
            file_id = await _upload(client, f"r{year}.txt", text)
            await client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id,
                                                    attributes={"year": year, "kind": "report"})
        await backend.ingestor.settled()
        recent = await client.vector_stores.search(store.id, query="rainfall report",
                                                   filters={"type": "gte", "key": "year", "value": 2024})
        assert [r.attributes["year"] for r in recent.data] == [2025]  # type: ignore[index]
        both = await client.vector_stores.search(store.id, query="rainfall report", filters={
            "type": "and", "filters": [{"type": "eq", "key": "kind", "value": "report"},
                                       {"type": "in", "key": "year", "value": [2023, 2025]}]})
        assert len(both.data) == 2
        none = await client.vector_stores.search(store.id, query="rainfall report",
                                                 ranking_options={"score_threshold": 1.0})
        assert all(r.score >= 1.0 for r in none.data)
        with pytest.raises(openai.BadRequestError) as bad:
            await client.vector_stores.search(store.id, query="x", filters={"type": "gt", "key": "year"})
        assert bad.value.body["param"].startswith("filters")  # type: ignore[index]

    _with_client(test)


def test_a_file_that_cannot_be_read_fails_with_its_reason() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        good = await _upload(client, "ok.txt", "plain words")
        bad = await _upload(client, "tool.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\xff\xff" * 50)
        store = await client.vector_stores.create(file_ids=[good, bad])
        await backend.ingestor.settled()
        store = await client.vector_stores.retrieve(store.id)
        assert (store.file_counts.completed, store.file_counts.failed, store.status) == (1, 1, "completed")
        failed = await client.vector_stores.files.retrieve(bad, vector_store_id=store.id)
        assert failed.status == "failed" and failed.last_error is not None and failed.last_error.message
        listed = await client.vector_stores.files.list(store.id, filter="failed")
        assert [f.id for f in listed.data] == [bad]

    _with_client(test)


def test_unknown_ids_are_refused_naming_the_param() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        with pytest.raises(openai.NotFoundError) as unknown_file:
            await client.vector_stores.create(file_ids=["file-nope"])
        assert unknown_file.value.body["param"] == "file_ids[0]"  # type: ignore[index]
        assert (await client.vector_stores.list()).data == []  # nothing was made
        with pytest.raises(openai.NotFoundError):
            await client.vector_stores.retrieve("vs_nope")
        store = await client.vector_stores.create()
        with pytest.raises(openai.NotFoundError) as in_batch:
            await client.vector_stores.file_batches.create(store.id, file_ids=["file-nope"])
        assert in_batch.value.body["param"] == "file_ids[0]"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as overlap:
            await client.vector_stores.create(chunking_strategy={"type": "static", "static": {
                "max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150}})
        assert overlap.value.body["param"] == "chunking_strategy.static.chunk_overlap_tokens"  # type: ignore[index]

    _with_client(test)


def test_files_are_updated_removed_and_the_store_deleted() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        file_id = await _upload(client, "tides.md", DOCS["tides.md"])
        store = await client.vector_stores.create(file_ids=[file_id])
        await backend.ingestor.settled()
        updated = await client.vector_stores.files.update(file_id, vector_store_id=store.id,
                                                          attributes={"lang": "en"})
        assert updated.attributes == {"lang": "en"}
        renamed = await client.vector_stores.update(store.id, name="renamed", metadata={"a": "b"})
        assert renamed.name == "renamed" and renamed.metadata == {"a": "b"}
        deleted = await client.vector_stores.files.delete(file_id, vector_store_id=store.id)
        _reference_check("DeleteVectorStoreFileResponse", deleted.model_dump(mode="json", exclude_unset=True))
        assert deleted.deleted
        store_now = await client.vector_stores.retrieve(store.id)
        assert store_now.file_counts.total == 0 and store_now.usage_bytes == 0
        assert (await client.vector_stores.search(store.id, query="tides")).data == []
        assert (await client.files.retrieve(file_id)).id == file_id  # the File itself stays
        gone = await client.vector_stores.delete(store.id)
        _reference_check("DeleteVectorStoreResponse", gone.model_dump(mode="json", exclude_unset=True))
        with pytest.raises(openai.NotFoundError):
            await client.vector_stores.retrieve(store.id)

    _with_client(test)


def test_a_batch_can_be_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from runner.server.tools.file_search import extract

    real = extract.extract_text
    gate = asyncio.Event()

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        loop = asyncio.get_running_loop()

        def slow(data: bytes, filename: str, mime_type: str | None = None) -> str:
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(timeout=10)
            return real(data, filename, mime_type)

        monkeypatch.setattr(extract, "extract_text", slow)
        store = await client.vector_stores.create()
        file_ids = [await _upload(client, f"{i}.txt", f"text {i}") for i in range(3)]
        batch = await client.vector_stores.file_batches.create(store.id, file_ids=file_ids)
        assert batch.status == "in_progress" and batch.file_counts.in_progress == 3
        cancelled = await client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
        assert cancelled.status == "cancelled" and cancelled.file_counts.cancelled == 3
        gate.set()
        await backend.ingestor.settled()
        store_now = await client.vector_stores.retrieve(store.id)
        assert store_now.file_counts.cancelled == 3 and store_now.status == "completed"

    _with_client(test)


def test_an_expired_store_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.server import objects

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        store = await client.vector_stores.create(expires_after={"anchor": "last_active_at", "days": 1})
        assert store.expires_at == store.last_active_at + 86_400  # type: ignore[operator]
        monkeypatch.setattr(objects, "now", lambda: store.expires_at)
        assert (await client.vector_stores.retrieve(store.id)).status == "expired"
        with pytest.raises(openai.BadRequestError, match="has expired"):
            await client.vector_stores.search(store.id, query="x")

    _with_client(test)


def test_a_retrieval_script_runs_against_runner_serve(tmp_path: Path) -> None:
    from serve_process import serving

    (tmp_path / "tides.md").write_text(DOCS["tides.md"], encoding="utf-8")
    with serving(tmp_path, "--provider", "echo") as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        store = client.vector_stores.create(name="served")
        batch = client.vector_stores.file_batches.upload_and_poll(store.id, files=[(tmp_path / "tides.md").open("rb")],
                                                                  poll_interval_ms=20)
        assert batch.file_counts.completed == 1
        hits = client.vector_stores.search(store.id, query="moon gravity")
        assert hits.data and hits.data[0].filename == "tides.md"
    with serving(tmp_path, "--provider", "echo") as server:  # restarted: the index is in the database
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        assert client.vector_stores.search(store.id, query="moon gravity").data[0].filename == "tides.md"

