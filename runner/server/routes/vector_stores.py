"""`/vector_stores`: create (with files), list, retrieve, update, delete; their files (add, list by status,
retrieve, update attributes, remove, parsed content), file batches (create, retrieve, cancel, list files),
and search. Files are indexed in the background (runner/server/ingest.py)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from runner.server import objects
from runner.server.errors import APIError, invalid, shown
from runner.server.ingest import key, public
from runner.server.routes.common import json_response, known, list_args, null_clears_metadata, read_body

if TYPE_CHECKING:
    from runner.server.app import Backend
    from runner.server.routes import Handler

_FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")


def _store(b: Backend, request: Request) -> dict[str, Any]:
    """The vector store the path names; an expired one says so, and is touched otherwise."""
    store = b.store.get("vector_store", request.path_params["vector_store_id"])
    if store["status"] != "expired" and store.get("expires_at") is not None and store["expires_at"] <= objects.now():
        store = b.store.update("vector_store", {**store, "status": "expired"})
    return store


def _usable(store: dict[str, Any]) -> None:
    if store["status"] == "expired":
        raise invalid(f"The vector store {store['id']} has expired.", "vector_store_id")


def _touch(b: Backend, store: dict[str, Any]) -> dict[str, Any]:
    """Mark a vector store active now (its expiry counts from its last activity)."""
    active = objects.now()
    return b.store.update("vector_store", {**store, "last_active_at": active,
                                           "expires_at": objects.expiry(active, store.get("expires_after"))})


def _chunking(strategy: dict[str, Any] | None, param: str) -> dict[str, Any] | None:
    """A request's chunking strategy as a vector store file reports it (None: `auto`)."""
    if strategy is None or strategy.get("type") == "auto":
        return None
    sizes = strategy["static"]
    if sizes["chunk_overlap_tokens"] > sizes["max_chunk_size_tokens"] // 2:
        raise invalid("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens.",
                      f"{param}.static.chunk_overlap_tokens")
    return {"type": "static", "static": dict(sizes)}


# -- vector stores ------------------------------------------------------------------------------------

async def create_vector_store(b: Backend, request: Request) -> Response:
    """POST /vector_stores: a store, with its first files being indexed."""
    params = await read_body(request, "CreateVectorStoreRequest")
    file_ids = params.get("file_ids") or []
    for i, file_id in enumerate(file_ids):
        known(b, "file", file_id, f"file_ids[{i}]")
    chunking = _chunking(params.get("chunking_strategy"), "chunking_strategy")
    store = b.store.insert("vector_store", objects.vector_store(params))
    for file_id in dict.fromkeys(file_ids):
        b.ingestor.add(store["id"], file_id, chunking=chunking)
    return json_response(b.store.get("vector_store", store["id"]))


async def list_vector_stores(b: Backend, request: Request) -> Response:
    """GET /vector_stores."""
    return json_response(b.store.list("vector_store", **list_args(request)).body())


async def get_vector_store(b: Backend, request: Request) -> Response:
    """GET /vector_stores/{vector_store_id}."""
    return json_response(_store(b, request))


async def update_vector_store(b: Backend, request: Request) -> Response:
    """POST /vector_stores/{vector_store_id}: name, expiry policy, metadata."""
    store = _store(b, request)
    params = await read_body(request, "UpdateVectorStoreRequest")
    null_clears_metadata(params)
    changed = {**store, **{k: v for k, v in params.items() if k in ("name", "metadata")}}
    if params.get("name") is None and "name" in params:
        changed["name"] = store["name"]
    if "expires_after" in params:
        changed.pop("expires_after", None)
        if params["expires_after"] is not None:
            changed["expires_after"] = params["expires_after"]
        changed["expires_at"] = objects.expiry(store["last_active_at"] or store["created_at"],
                                               params["expires_after"])
    return json_response(b.store.update("vector_store", objects.revalidated("vector_store", changed)))


async def delete_vector_store(b: Backend, request: Request) -> Response:
    """DELETE /vector_stores/{vector_store_id}, with its files' chunks (the Files themselves stay)."""
    store = _store(b, request)
    b.ingestor.remove_store(store["id"])
    return json_response({"id": store["id"], "object": "vector_store.deleted", "deleted": True})


# -- vector store files ---------------------------------------------------------------------------

def _vector_store_file(b: Backend, request: Request) -> dict[str, Any]:
    store = _store(b, request)
    file_id = request.path_params["file_id"]
    try:
        return b.store.get("vector_store_file", key(store["id"], file_id))
    except APIError:
        raise APIError(404, f"No file found with id '{shown(file_id)}' in vector store {store['id']}.") from None


async def create_vector_store_file(b: Backend, request: Request) -> Response:
    """POST /vector_stores/{vector_store_id}/files: attach a File (indexed in the background)."""
    store = _store(b, request)
    _usable(store)
    params = await read_body(request, "CreateVectorStoreFileRequest")
    known(b, "file", params["file_id"], "file_id")
    body = b.ingestor.add(store["id"], params["file_id"],
                          chunking=_chunking(params.get("chunking_strategy"), "chunking_strategy"),
                          attributes=params.get("attributes"))
    _touch(b, b.store.get("vector_store", store["id"]))
    return json_response(body)


def _status_filter(request: Request) -> dict[str, str] | None:
    wanted = request.query_params.get("filter")
    if wanted is None:
        return None
    if wanted not in _FILE_STATUSES:
        raise invalid(f"Invalid 'filter': expected one of {', '.join(_FILE_STATUSES)}, but got "
                      f"'{shown(wanted)}'.", "filter")
    return {"status": wanted}


def _files_page(b: Backend, request: Request, vector_store_id: str, batch_id: str | None = None) -> Response:
    args = list_args(request)
    for cursor in ("after", "before"):  # the API's cursors are file ids
        if args.get(cursor) is not None:
            args[cursor] = key(vector_store_id, args[cursor])
    page = b.store.list("vector_store_file", parent=vector_store_id, run_id=batch_id,
                        matching=_status_filter(request), **args)
    page.data = [public(f) for f in page.data]
    return json_response(page.body())


async def list_vector_store_files(b: Backend, request: Request) -> Response:
    """GET /vector_stores/{vector_store_id}/files (`filter` by status)."""
    return _files_page(b, request, _store(b, request)["id"])


async def get_vector_store_file(b: Backend, request: Request) -> Response:
    """GET /vector_stores/{vector_store_id}/files/{file_id}."""
    return json_response(public(_vector_store_file(b, request)))


async def update_vector_store_file(b: Backend, request: Request) -> Response:
    """POST /vector_stores/{vector_store_id}/files/{file_id}: its attributes (used by search filters)."""
    vsf = _vector_store_file(b, request)
    params = await read_body(request, "UpdateVectorStoreFileAttributesRequest")
    changed = {**vsf, "attributes": params["attributes"] or {}}
    return json_response(public(b.store.update("vector_store_file", changed)))


async def delete_vector_store_file(b: Backend, request: Request) -> Response:
    """DELETE /vector_stores/{vector_store_id}/files/{file_id}: detach it (the File stays)."""
    vsf = _vector_store_file(b, request)
    file_id = public(vsf)["id"]
    b.ingestor.remove(vsf["vector_store_id"], file_id)
    return json_response({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})


async def vector_store_file_content(b: Backend, request: Request) -> Response:
    """GET /vector_stores/{vector_store_id}/files/{file_id}/content: the text as indexed, chunk by chunk."""
    vsf = _vector_store_file(b, request)
    chunks = b.ingestor.index.file_chunks(vsf["vector_store_id"], public(vsf)["id"])
    return json_response({"object": "vector_store.file_content.page", "data": [
        {"type": "text", "text": text} for text in chunks], "has_more": False, "next_page": None})


# -- file batches -------------------------------------------------------------------------------------

async def create_file_batch(b: Backend, request: Request) -> Response:
    """POST /vector_stores/{vector_store_id}/file_batches: many files at once (`file_ids` or `files`)."""
    store = _store(b, request)
    _usable(store)
    params = await read_body(request, "CreateVectorStoreFileBatchRequest")
    if ("file_ids" in params) == ("files" in params):
        raise invalid("Give exactly one of 'file_ids' and 'files'.", "file_ids" if "file_ids" in params else "files")
    if "file_ids" in params:
        chunking = _chunking(params.get("chunking_strategy"), "chunking_strategy")
        entries = [(f"file_ids[{i}]", {"file_id": file_id, "attributes": params.get("attributes")}, chunking)
                   for i, file_id in enumerate(params["file_ids"])]
    else:
        entries = [(f"files[{i}].file_id", entry,
                    _chunking(entry.get("chunking_strategy"), f"files[{i}].chunking_strategy"))
                   for i, entry in enumerate(params["files"])]
    for param, entry, _ in entries:
        known(b, "file", entry["file_id"], param)
    batch = b.store.insert("vector_store_file_batch",
                           objects.file_batch(store["id"], objects.file_counts(in_progress=len(entries))),
                           parent=store["id"])
    for _, entry, chunking in entries:
        b.ingestor.add(store["id"], entry["file_id"], chunking=chunking, attributes=entry.get("attributes"),
                       batch_id=batch["id"])
    _touch(b, b.store.get("vector_store", store["id"]))
    return json_response(b.store.get("vector_store_file_batch", batch["id"]))


def _batch(b: Backend, request: Request) -> dict[str, Any]:
    store = _store(b, request)
    return b.store.get("vector_store_file_batch", request.path_params["batch_id"], parent=store["id"])


async def get_file_batch(b: Backend, request: Request) -> Response:
    """GET /vector_stores/{vector_store_id}/file_batches/{batch_id}."""
    return json_response(_batch(b, request))


async def cancel_file_batch(b: Backend, request: Request) -> Response:
    """POST .../file_batches/{batch_id}/cancel: its files still in progress are cancelled."""
    batch = _batch(b, request)
    await read_body(request, "")
    if batch["status"] != "in_progress":
        return json_response(batch)
    return json_response(b.ingestor.cancel_batch(batch["id"]))


async def list_file_batch_files(b: Backend, request: Request) -> Response:
    """GET .../file_batches/{batch_id}/files (`filter` by status)."""
    batch = _batch(b, request)
    return _files_page(b, request, batch["vector_store_id"], batch["id"])


# -- search ---------------------------------------------------------------------------------------------

async def search_vector_store(b: Backend, request: Request) -> Response:
    """POST /vector_stores/{vector_store_id}/search: hybrid search of its chunks, best first."""
    from runner.server.tools.file_search.embeddings import EmbeddingError
    from runner.server.tools.file_search.filters import FilterError, check_filters

    store = _store(b, request)
    _usable(store)
    params = await read_body(request, "VectorStoreSearchRequest")
    queries = [params["query"]] if isinstance(params["query"], str) else list(params["query"])
    if not queries or not any(q.strip() for q in queries):
        raise invalid("The query must not be empty.", "query")
    filters = params.get("filters")
    if filters is not None:
        try:
            check_filters(filters)
        except FilterError as exc:
            raise invalid(str(exc), exc.param) from None
    ranking = params.get("ranking_options") or {}
    try:  # off the loop: an embedder may take a while to embed the query
        hits = await asyncio.to_thread(b.ingestor.search, [store["id"]], " ".join(queries),
                                       limit=params.get("max_num_results", 10),
                                       threshold=ranking.get("score_threshold", 0.0), filters=filters)
    except EmbeddingError as exc:  # the upstream failed, not this backend: 502, saying which one
        raise APIError(502, f"The query could not be embedded: {exc}", type="server_error") from None
    _touch(b, store)
    return json_response({
        "object": "vector_store.search_results.page", "search_query": queries, "has_more": False,
        "next_page": None,
        "data": [{"file_id": hit["file_id"], "filename": hit["filename"], "score": hit["score"],
                  "attributes": hit["attributes"], "content": [{"type": "text", "text": hit["text"]}]}
                 for hit in hits],
    })


ROUTES: list[tuple[str, str, Handler]] = [
    ("/vector_stores", "POST", create_vector_store),
    ("/vector_stores", "GET", list_vector_stores),
    ("/vector_stores/{vector_store_id}", "GET", get_vector_store),
    ("/vector_stores/{vector_store_id}", "POST", update_vector_store),
    ("/vector_stores/{vector_store_id}", "DELETE", delete_vector_store),
    ("/vector_stores/{vector_store_id}/files", "POST", create_vector_store_file),
    ("/vector_stores/{vector_store_id}/files", "GET", list_vector_store_files),
    ("/vector_stores/{vector_store_id}/files/{file_id}", "GET", get_vector_store_file),
    ("/vector_stores/{vector_store_id}/files/{file_id}", "POST", update_vector_store_file),
    ("/vector_stores/{vector_store_id}/files/{file_id}", "DELETE", delete_vector_store_file),
    ("/vector_stores/{vector_store_id}/files/{file_id}/content", "GET", vector_store_file_content),
    ("/vector_stores/{vector_store_id}/file_batches", "POST", create_file_batch),
    ("/vector_stores/{vector_store_id}/file_batches/{batch_id}", "GET", get_file_batch),
    ("/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel", "POST", cancel_file_batch),
    ("/vector_stores/{vector_store_id}/file_batches/{batch_id}/files", "GET", list_file_batch_files),
    ("/vector_stores/{vector_store_id}/search", "POST", search_vector_store),
]
