"""What the routes share: reading and checking a request, list parameters, answers, and building the
messages and threads several resources create."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from runner.server import checks, objects
from runner.server.body import read_object
from runner.server.errors import APIError, invalid, shown
from runner.server.executor import ACTIVE_RUN_STATUSES

if TYPE_CHECKING:
    from runner.server.app import Backend


async def read_body(request: Request, schema: str) -> dict[str, Any]:
    """The request's JSON body, read within the limits and checked against its request schema (400 or 413)."""
    body = await read_object(request)
    checks.check(schema, body)
    return body


def null_clears_metadata(body: dict[str, Any]) -> None:
    if "metadata" in body and body["metadata"] is None:
        body["metadata"] = {}  # null clears it, as the API answers with {}


def check_tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    """400 for a `tool_choice` naming a tool the run does not have (its shape is checked with the rest)."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    kind = choice["type"]
    if kind in ("file_search", "code_interpreter"):
        # accepted and stored; the model is not steered by it until the backend executes these tools
        if not any(t.get("type") == kind for t in tools):
            raise invalid(f"Invalid value for 'tool_choice': the run's tools have no {kind} tool.", "tool_choice")
        return
    name = choice["function"]["name"]
    if name not in {t["function"]["name"] for t in tools if t.get("type") == "function"}:
        raise invalid(f"tool_choice names the function '{shown(name)}', which is not among the run's "
                      "tools.", "tool_choice.function.name")


def message_content(content: str | list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """Message content from a checked request (a string or content parts) in the stored form."""
    if isinstance(content, str):
        return objects.text_content(content)
    parts = []
    for i, part in enumerate(content):
        if part["type"] != "text":
            raise invalid("Only text content parts are supported by this backend.", f"{param}[{i}]")
        parts.extend(objects.text_content(part["text"]))
    return parts




def check_include(request: Request) -> list[str]:
    """The query's `include` values; 400 naming `include` for a value the API does not know."""
    asked = request.query_params.getlist("include") + request.query_params.getlist("include[]")
    for value in asked:
        if value not in checks.INCLUDABLE:
            raise invalid(f"Invalid value: '{shown(value)}'. Supported values are: "
                          f"{', '.join(checks.INCLUDABLE)}.", "include")
    return asked


def list_args(request: Request) -> dict[str, Any]:
    return checks.list_params(request.query_params)


def json_response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def new_message(thread_id: str, m: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A new message from checked request parameters, not stored; `prefix` is where the request gave it."""
    content = message_content(m["content"], f"{prefix}.content" if prefix else "content")
    return objects.message(thread_id, m["role"], content, metadata=m.get("metadata"),
                           attachments=m.get("attachments"), param=prefix)


def new_messages(thread_id: str, messages: list[dict[str, Any]] | None, param: str) -> list[dict[str, Any]]:
    """New messages from a checked request's list of them, not stored."""
    return [new_message(thread_id, m, f"{param}[{i}]") for i, m in enumerate(messages or [])]


def insert_messages(b: Backend, thread_id: str, messages: list[dict[str, Any]]) -> None:
    for msg in messages:
        b.store.insert("message", msg, parent=thread_id)


def thread_from(body: dict[str, Any], param: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new thread and its messages from checked create parameters, not stored."""
    thread = objects.thread(body, param=param)
    return thread, new_messages(thread["id"], body.get("messages"), f"{param}.messages" if param else "messages")


def active_run(b: Backend, thread_id: str) -> str | None:
    run_id = b.store.private(thread_id).get("active_run")
    if run_id is None:
        return None
    return run_id if b.executor.refresh(b.store.get("run", run_id))["status"] in ACTIVE_RUN_STATUSES else None


def known(b: Backend, kind: str, object_id: str, param: str) -> None:
    """404 naming `param` unless an object of `kind` with this id exists (a file, a vector store)."""
    try:
        b.store.get(kind, object_id)  # type: ignore[arg-type]
    except APIError:
        noun = "vector store" if kind == "vector_store" else kind
        raise APIError(404, f"No {noun} found with id '{shown(object_id)}'.", param=param) from None


def check_references(b: Backend, body: dict[str, Any], param: str = "") -> None:
    """404 naming the param for an unknown file or vector store in a checked body's `tool_resources` and its
    messages' `attachments` (the hosted API refused them; accepted, they would silently do nothing)."""
    at = f"{param}." if param else ""
    resources = body.get("tool_resources") or {}
    search = resources.get("file_search") or {}
    for i, store_id in enumerate(search.get("vector_store_ids") or []):
        known(b, "vector_store", store_id, f"{at}tool_resources.file_search.vector_store_ids[{i}]")
    for i, store in enumerate(search.get("vector_stores") or []):
        for j, file_id in enumerate(store.get("file_ids") or []):
            known(b, "file", file_id, f"{at}tool_resources.file_search.vector_stores[{i}].file_ids[{j}]")
    for i, file_id in enumerate((resources.get("code_interpreter") or {}).get("file_ids") or []):
        known(b, "file", file_id, f"{at}tool_resources.code_interpreter.file_ids[{i}]")
    for i, message in enumerate(body.get("messages") or []):
        check_attachments(b, message, f"{at}messages[{i}]")


def check_attachments(b: Backend, message: dict[str, Any], param: str = "") -> None:
    """404 naming the param for an attachment whose file does not exist."""
    at = f"{param}." if param else ""
    for i, attachment in enumerate(message.get("attachments") or []):
        known(b, "file", attachment["file_id"], f"{at}attachments[{i}].file_id")


def make_vector_stores(b: Backend, body: dict[str, Any]) -> None:
    """Create the vector stores a checked body asks for inline (`tool_resources.file_search.vector_stores`)
    and name them in `vector_store_ids` instead, as the API does (call after `check_references`)."""
    search = (body.get("tool_resources") or {}).get("file_search") or {}
    for store in search.pop("vector_stores", None) or []:
        made = b.store.insert("vector_store", objects.vector_store({"metadata": store.get("metadata")}))
        strategy = store.get("chunking_strategy")
        chunking = None if not strategy or strategy["type"] == "auto" else {"type": "static",
                                                                            "static": dict(strategy["static"])}
        for file_id in dict.fromkeys(store.get("file_ids") or []):
            b.ingestor.add(made["id"], file_id, chunking=chunking)
        search.setdefault("vector_store_ids", []).append(made["id"])


def attach_files(b: Backend, thread_id: str, messages: list[dict[str, Any]]) -> None:
    """Files attached to messages go where their tools look, as the API puts them: a `file_search` attachment
    into the thread's own vector store (made with the first one), a `code_interpreter` one among the thread's
    code interpreter files. Call once the thread and its messages are stored."""
    wanted = [(a["file_id"], {t.get("type") for t in a.get("tools") or []})
              for m in messages for a in m.get("attachments") or []]
    if not wanted:
        return
    thread = b.store.get("thread", thread_id)
    resources = thread.get("tool_resources") or {}
    search = resources.setdefault("file_search", {})
    code = resources.setdefault("code_interpreter", {})
    for file_id, tools in wanted:
        if "file_search" in tools:
            if not search.get("vector_store_ids"):
                made = b.store.insert("vector_store", objects.vector_store({"name": f"thread {thread_id}"}))
                search["vector_store_ids"] = [made["id"]]
            b.ingestor.add(search["vector_store_ids"][0], file_id)
        if "code_interpreter" in tools and file_id not in code.setdefault("file_ids", []):
            code["file_ids"].append(file_id)
    for name in ("file_search", "code_interpreter"):
        if not resources[name] or resources[name] == {"file_ids": []}:
            resources.pop(name)
    b.store.update("thread", objects.revalidated("thread", {**thread, "tool_resources": resources}))
