"""The built-in tools of a response: `file_search` over the request's vector stores and `code_interpreter` in a
container (a sandboxed session), as the request's `tools` declare them.

The model is offered each as a function (runner.server.tools.functions) and the backend runs its calls, as for
runs; what they did is shown as the Responses API shows it: `file_search_call` and `code_interpreter_call` output
items, `file_citation` and `container_file_citation` annotations on the reply. Results and outputs are stored whole
and shown where `include` asks for them (`file_search_call.results`, `code_interpreter_call.outputs`), as the API
does. A container lives as long as its session; `{"type": "auto"}` reuses the container of the last code call in
the response's context, so a conversation's variables and files persist from turn to turn, as a thread's did.
"""

from __future__ import annotations

import asyncio
import base64
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.server import objects
from runner.server.errors import APIError, invalid, shown
from runner.server.ids import new_id
from runner.server.tools.code_interpreter.tool import file_paths
from runner.server.tools.file_search.citations import file_citations, search_output

if TYPE_CHECKING:
    from runner.server.app import Backend

FILE_SEARCH_MAX_RESULTS = 20  # the API's default number of results
BUILTIN_ITEMS = ("file_search_call", "code_interpreter_call")
# what `include` adds to each kind of built-in call item, by the key it fills
_INCLUDED = {"file_search_call": ("results", "file_search_call.results"),
             "code_interpreter_call": ("outputs", "code_interpreter_call.outputs")}


@dataclass
class Builtins:
    """What a request's built-in tools ask: where and how to search, and where the code runs."""

    search: dict[str, Any] | None = None  # the file_search tool as given
    code: bool = False  # whether the code_interpreter tool was given
    container_id: str | None = None  # the container the code runs in (None: a new one, made on the first call)
    file_ids: list[str] = field(default_factory=list)  # the files an `auto` container is given

    @property
    def names(self) -> frozenset[str]:
        """The built-in tools the request offers, by name."""
        return frozenset(name for name, there in (("file_search", self.search), ("code_interpreter", self.code))
                         if there)


@dataclass
class Calls:
    """What a response's built-in calls have given so far, for the reply's annotations."""

    searches: list[list[tuple[str, str]]] = field(default_factory=list)  # per search: its results' (file id, name)
    container_id: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # /mnt/data path -> file id, of the files the code wrote


def check_tool(b: Backend, tool: dict[str, Any], i: int, builtins: Builtins,
               context: list[dict[str, Any]]) -> dict[str, Any]:
    """A `file_search` or `code_interpreter` tool of the request checked (400 or 404 naming `tools[i]...`) and
    noted in `builtins`; the tool as the response shows it."""
    kind = tool["type"]
    if kind in builtins.names:
        raise invalid(f"Only one tool of type '{kind}' may be given.", f"tools[{i}].type")
    if kind == "file_search":
        return _check_search(b, tool, i, builtins)
    if b.code is None:
        raise invalid("The code_interpreter tool is not enabled on this backend: start it with "
                      "`runner serve --code-interpreter` (it runs code in a bubblewrap sandbox).", f"tools[{i}].type")
    container = tool.get("container")
    if container is None:
        raise invalid(f"Missing required parameter: 'tools[{i}].container'.", f"tools[{i}].container")
    builtins.code = True
    if isinstance(container, str):
        try:
            b.store.get("container", container)
        except APIError:
            raise APIError(404, f"Container with id '{shown(container)}' not found.",
                           param=f"tools[{i}].container") from None
        builtins.container_id = container
    else:
        for j, file_id in enumerate(container.get("file_ids") or []):
            _exists(b, "file", file_id, f"tools[{i}].container.file_ids[{j}]", "File")
        builtins.file_ids = list(container.get("file_ids") or [])
        builtins.container_id = _context_container(b, context)
    return {"type": "code_interpreter", "container": container}


def _check_search(b: Backend, tool: dict[str, Any], i: int, builtins: Builtins) -> dict[str, Any]:
    from runner.server.tools.file_search.filters import FilterError, check_filters

    stores = tool.get("vector_store_ids")
    if stores is None:
        raise invalid(f"Missing required parameter: 'tools[{i}].vector_store_ids'.", f"tools[{i}].vector_store_ids")
    for j, store_id in enumerate(stores):
        _exists(b, "vector_store", store_id, f"tools[{i}].vector_store_ids[{j}]", "Vector store")
    if tool.get("filters") is not None:
        try:
            check_filters(tool["filters"], f"tools[{i}].filters")
        except FilterError as exc:
            raise invalid(str(exc), exc.param) from None
    builtins.search = tool
    ranking = tool.get("ranking_options") or {}
    return {"type": "file_search", "vector_store_ids": list(stores), "filters": tool.get("filters"),
            "max_num_results": tool.get("max_num_results") or FILE_SEARCH_MAX_RESULTS,
            "ranking_options": {"ranker": ranking.get("ranker") or "auto",
                                "score_threshold": float(ranking.get("score_threshold") or 0.0)}}


def _exists(b: Backend, kind: Any, object_id: str, param: str, noun: str) -> None:
    try:
        b.store.get(kind, object_id)
    except APIError:
        raise APIError(404, f"{noun} with id '{shown(object_id)}' not found.", param=param) from None


def _context_container(b: Backend, context: list[dict[str, Any]]) -> str | None:
    """The container of the context's last code call, if it still exists."""
    for item in reversed(context):
        if item.get("type") == "code_interpreter_call":
            try:
                b.store.get("container", item["container_id"])
            except APIError:
                return None
            return str(item["container_id"])
    return None


async def search(b: Backend, builtins: Builtins, calls: Calls, query: str) -> tuple[dict[str, Any], str]:
    """A file_search call for `query`: (its output item, what the model reads of it, its results under markers).
    ModelError when the search cannot be made (an embedding endpoint down): the response fails saying why."""
    options = builtins.search or {}
    stores = list(options.get("vector_store_ids") or [])
    await b.ingestor.settled_for(stores)  # a file just added is searched once indexed, as the API waits
    ranking = options.get("ranking_options") or {}
    results = await asyncio.to_thread(
        b.search, stores, query, options.get("max_num_results") or FILE_SEARCH_MAX_RESULTS,
        float(ranking.get("score_threshold") or 0.0), options.get("filters"))
    item = {"id": new_id("fs_"), "type": "file_search_call", "status": "completed", "queries": [query],
            "results": [{"file_id": r["file_id"], "filename": r["file_name"], "score": r["score"],
                         "text": "\n".join(part["text"] for part in r["content"]),
                         "attributes": r.get("attributes") or {}} for r in results]}
    output = search_output(len(calls.searches), query, results)
    calls.searches.append([(r["file_id"], r["file_name"]) for r in results])
    return item, output


async def run_code(b: Backend, builtins: Builtins, calls: Calls, code: str) -> tuple[dict[str, Any], str]:
    """A code_interpreter call running `code` in the response's container (made on the first call): (its output
    item, what the model reads of it). ModelError when no sandbox can start."""
    assert b.code is not None
    container_id = calls.container_id or builtins.container_id
    if container_id is None:
        container = {"id": new_id("cntr_"), "object": "container", "created_at": objects.now(), "status": "running",
                     "name": "code interpreter"}
        container_id = b.store.insert("container", container, private={"file_ids": []})["id"]
    calls.container_id = container_id
    private = b.store.private(container_id)
    file_ids = list(dict.fromkeys([*private.get("file_ids", []), *builtins.file_ids]))
    if file_ids != private.get("file_ids"):
        b.store.set_private("container", container_id, {**private, "file_ids": file_ids})
    outcome = await b.code.call(container_id, file_ids, code)
    calls.files.update(outcome.files)
    outputs: list[dict[str, Any]] = []
    for output in outcome.outputs:
        if output["type"] == "logs":
            outputs.append(output)
        else:  # a figure: its PNG inline, so any client shows it without asking this backend for it
            _, stored = b.store.get_with_private("file", output["image"]["file_id"])
            png = base64.b64encode(b.blobs.read(stored["sha256"])).decode()
            outputs.append({"type": "image", "url": f"data:image/png;base64,{png}"})
    item = {"id": new_id("ci_"), "type": "code_interpreter_call", "status": "completed", "code": code,
            "container_id": container_id, "outputs": outputs}
    return item, outcome.model_output


def reply_annotations(text: str, calls: Calls) -> list[dict[str, Any]]:
    """The reply's annotations: a `file_citation` per marker naming a search result, a `container_file_citation`
    per `sandbox:/mnt/data/...` link to a file the code wrote."""
    names = {file_id: name for search_results in calls.searches for file_id, name in search_results}
    found = [{"type": "file_citation", "file_id": a["file_citation"]["file_id"],
              "filename": names[a["file_citation"]["file_id"]], "index": a["start_index"]}
             for a in file_citations(text, [[file_id for file_id, _ in s] for s in calls.searches])]
    found += [{"type": "container_file_citation", "container_id": calls.container_id,
               "file_id": a["file_path"]["file_id"], "filename": posixpath.basename(a["text"]),
               "start_index": a["start_index"], "end_index": a["end_index"]} for a in file_paths(text, calls.files)]
    return sorted(found, key=lambda a: a.get("index", a.get("start_index", 0)))


def shown_item(item: dict[str, Any], include: list[str]) -> dict[str, Any]:
    """An item as a client sees it: a built-in call's results or outputs only where `include` asks for them."""
    key, asked = _INCLUDED.get(item["type"], (None, None))
    if key is None or asked in include:
        return item
    return {**item, key: None}


def shown_response(response: dict[str, Any], include: list[str]) -> dict[str, Any]:
    """A response as a client sees it (see shown_item)."""
    return {**response, "output": [shown_item(item, include) for item in response["output"]]}
