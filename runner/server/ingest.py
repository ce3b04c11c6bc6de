"""Adding files to vector stores in the background: extract the text, chunk it, index it, and keep every
count and status the API shows right as files move `in_progress` -> `completed` / `failed` / `cancelled`.

A vector store file is stored under `vsf:{vector_store_id}:{file_id}` (a file may be in several stores, and
the API names a vector store file by its file's id); `key`/`public` translate. A file's batch is kept in
the object's group column (`run_id` in the store), so a batch's files list like a run's steps.
Extraction and chunking run in a worker thread, so the event loop keeps answering; a backend that restarts
resumes the files it left in progress, since their bytes are on disk.

With an embedder (runner/server/tools/file_search/embeddings.py), each file's chunks are embedded (awaited, so
removing the file or stopping the backend cancels the request) and searches rank by meaning too. A file whose
chunks cannot be embedded fails, its `last_error` naming the embedder; a search whose query cannot be embedded
fails too (EmbeddingError), rather than quietly ranking by keywords alone: a run's results would then depend on
an outage, and a replay that is missing its query's embedding would pass for one that matched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from runner.server import objects
from runner.server.blobs import BlobStore
from runner.server.store import Store

if TYPE_CHECKING:
    from runner.server.tools.file_search.embeddings import Embedder

_log = logging.getLogger("runner.server")


def key(vector_store_id: str, file_id: str) -> str:
    """The store key of a vector store file."""
    return f"vsf:{vector_store_id}:{file_id}"


def public(body: dict[str, Any]) -> dict[str, Any]:
    """A stored vector store file as the API shows it (its id is its file's)."""
    return {**body, "id": body["id"].rsplit(":", 1)[-1]} if body["id"].startswith("vsf:") else body


class Ingestor:
    """Indexes files into vector stores, one asyncio task per file, and keeps the counts right."""

    def __init__(self, store: Store, blobs: BlobStore, embedder: Embedder | None = None) -> None:
        self.store = store
        self.blobs = blobs
        self.embedder = embedder  # None: keyword search only
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._index: Any = None

    @property
    def index(self) -> Any:
        """The search index (its tables made on first use, in the backend's database)."""
        if self._index is None:
            from runner.server.tools.file_search.index import SearchIndex

            self._index = SearchIndex(self.store._db, self.store._lock)
        return self._index

    def add(self, vector_store_id: str, file_id: str, *, chunking: dict[str, Any] | None = None,
            attributes: dict[str, Any] | None = None, batch_id: str | None = None) -> dict[str, Any]:
        """Attach a file to a vector store (again: re-indexed) and start indexing it; the new vector store file."""
        stored_key = key(vector_store_id, file_id)
        body = {**objects.vector_store_file(vector_store_id, file_id, chunking, attributes), "id": stored_key}
        with self.store.transaction():
            with contextlib.suppress(Exception):  # attached before: replaced
                self.store.delete("vector_store_file", stored_key)
            self.store.insert("vector_store_file", body, parent=vector_store_id, run_id=batch_id)
            self.refresh(vector_store_id, batch_id)
        self._start(stored_key)
        return public(body)

    def _start(self, stored_key: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): resumed by the next one that runs
            return
        previous = self._tasks.pop(stored_key, None)
        if previous is not None:
            previous.cancel()
        task = loop.create_task(self._ingest(stored_key))
        self._tasks[stored_key] = task
        task.add_done_callback(lambda done: self._tasks.pop(stored_key, None) if self._tasks.get(stored_key)
                               is done else None)

    async def _ingest(self, stored_key: str) -> None:
        from runner.server.tools.file_search.chunking import chunk_text
        from runner.server.tools.file_search.embeddings import EmbeddingError
        from runner.server.tools.file_search.extract import UnsupportedFile, extract_text

        vsf = self.store.get("vector_store_file", stored_key)
        vector_store_id, file_id = vsf["vector_store_id"], public(vsf)["id"]
        strategy = (vsf.get("chunking_strategy") or objects.AUTO_CHUNKING)["static"]
        try:
            file = self.store.get("file", file_id)
            private = self.store.private(file_id)
            data = await asyncio.to_thread(self.blobs.read, private["sha256"])
            text = await asyncio.to_thread(extract_text, data, file["filename"], private.get("mime_type"))
            chunks = await asyncio.to_thread(chunk_text, text, strategy["max_chunk_size_tokens"],
                                             strategy["chunk_overlap_tokens"])
            vectors, model = None, None
            if self.embedder is not None and chunks:
                vectors, model = await self.embedder.embed([chunk.text for chunk in chunks]), self.embedder.model
            usage = await asyncio.to_thread(self.index.add_file, vector_store_id, file_id, chunks, vectors=vectors,
                                            model=model)
        except asyncio.CancelledError:
            raise
        except UnsupportedFile as exc:  # unsupported_file, or invalid_file for a corrupt or empty one
            self._finish(stored_key, "failed", error={"code": exc.code, "message": str(exc)})
            return
        except EmbeddingError as exc:  # the embedder's failure, not a bug: no traceback
            _log.warning("indexing %s into %s failed: %s", file_id, vector_store_id, exc)
            self._finish(stored_key, "failed", error={"code": "server_error",
                                                      "message": f"the file could not be embedded: {exc}"})
            return
        except Exception as exc:  # a file that breaks the pipeline fails, never the backend
            _log.exception("indexing %s into %s failed", file_id, vector_store_id)
            self._finish(stored_key, "failed", error={"code": "server_error",
                                                      "message": f"the file could not be indexed: {exc}"})
            return
        self._finish(stored_key, "completed", usage=usage)

    def _finish(self, stored_key: str, status: str, *, usage: int = 0, error: dict[str, str] | None = None) -> None:
        try:
            vsf = self.store.get("vector_store_file", stored_key)
        except Exception:  # removed while it was being indexed
            return
        if vsf["status"] != "in_progress":  # cancelled meanwhile
            return
        with self.store.transaction():
            self.store.update("vector_store_file", {**vsf, "status": status, "usage_bytes": usage,
                                                    "last_error": error})
            self.refresh(vsf["vector_store_id"], self.store.group_of(stored_key))

    def refresh(self, vector_store_id: str, batch_id: str | None = None) -> None:
        """Recount a vector store's files (and a batch's): counts, usage, status."""
        files = self.store.children("vector_store_file", vector_store_id)
        store = self.store.get("vector_store", vector_store_id)
        counts = _count(files)
        status = store["status"] if store["status"] == "expired" else (
            "in_progress" if counts["in_progress"] else "completed")
        self.store.update("vector_store", {**store, "file_counts": counts, "status": status,
                                           "usage_bytes": sum(f["usage_bytes"] for f in files)})
        if batch_id is not None:
            batch = self.store.get("vector_store_file_batch", batch_id)
            counts = _count(self.store.children("vector_store_file", vector_store_id, run_id=batch_id))
            status = batch["status"] if batch["status"] == "cancelled" else (
                "in_progress" if counts["in_progress"] else "completed")
            self.store.update("vector_store_file_batch", {**batch, "file_counts": counts, "status": status})

    def search(self, vector_store_ids: list[str], query: str, *, limit: int, threshold: float = 0.0,
               filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The best chunks of the stores' indexed (`completed`) files for `query`, whose attributes pass
        `filters` (checked already): each its file's id and name, score, attributes and text. Call it off the
        event loop: with an embedder, it embeds the query, blocking (EmbeddingError when it cannot)."""
        from runner.server.tools.file_search.filters import matches

        attributes = {(vs, public(f)["id"]): f.get("attributes") or {} for vs in vector_store_ids
                      for f in self.store.children("vector_store_file", vs) if f["status"] == "completed"}
        if not attributes or not query.strip():
            return []

        def allowed(vector_store_id: str, file_id: str) -> bool:
            found = attributes.get((vector_store_id, file_id))
            return found is not None and (filters is None or matches(filters, found))

        embedder = self.embedder
        hits = self.index.search(vector_store_ids, query, max_num_results=limit, score_threshold=threshold,
                                 allowed_files=allowed, embed=embedder.embed_blocking if embedder else None,
                                 model=embedder.model if embedder else None)
        names = {hit.file_id: self.store.get("file", hit.file_id)["filename"] for hit in hits}
        return [{"file_id": hit.file_id, "filename": names[hit.file_id], "score": round(hit.score, 6),
                 "attributes": attributes[(hit.vector_store_id, hit.file_id)], "text": hit.text} for hit in hits]

    def remove(self, vector_store_id: str, file_id: str) -> None:
        """Detach a file from a vector store: its task stops, its chunks go."""
        stored_key = key(vector_store_id, file_id)
        task = self._tasks.pop(stored_key, None)
        if task is not None:
            task.cancel()
        batch_id = self.store.group_of(stored_key)
        with self.store.transaction():
            self.store.delete("vector_store_file", stored_key)
            self.index.remove_file(vector_store_id, file_id)
            self.refresh(vector_store_id, batch_id)

    def remove_store(self, vector_store_id: str) -> None:
        """Delete a vector store with its files and chunks."""
        for vsf in self.store.children("vector_store_file", vector_store_id):
            task = self._tasks.pop(vsf["id"], None)
            if task is not None:
                task.cancel()
        with self.store.transaction():
            self.store.delete("vector_store", vector_store_id)
            self.index.remove_store(vector_store_id)

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Stop a batch: its files still in progress end `cancelled`; the batch is `cancelled`."""
        batch = self.store.get("vector_store_file_batch", batch_id)
        vector_store_id = batch["vector_store_id"]
        with self.store.transaction():
            for vsf in self.store.children("vector_store_file", vector_store_id, run_id=batch_id):
                if vsf["status"] == "in_progress":
                    task = self._tasks.pop(vsf["id"], None)
                    if task is not None:
                        task.cancel()
                    self.store.update("vector_store_file", {**vsf, "status": "cancelled"})
            self.store.update("vector_store_file_batch", {**batch, "status": "cancelled"})
            self.refresh(vector_store_id, batch_id)
        return self.store.get("vector_store_file_batch", batch_id)

    def resume(self) -> int:
        """Start again the files a previous process left in progress; how many."""
        stranded = self.store.with_status("vector_store_file", ("in_progress",))
        for vsf in stranded:
            self._start(vsf["id"])
        return len(stranded)

    async def settled_for(self, vector_store_ids: list[str]) -> None:
        """Wait until the files being indexed into these vector stores are done."""
        prefixes = tuple(f"vsf:{vector_store_id}:" for vector_store_id in vector_store_ids)
        while pending := [task for stored_key, task in self._tasks.items() if stored_key.startswith(prefixes)]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def settled(self) -> None:
        """Wait until every file being indexed now is done (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def shutdown(self) -> None:
        """Stop indexing (what is left in progress resumes when the backend starts again)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _count(files: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in files:
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    return objects.file_counts(**counts)
