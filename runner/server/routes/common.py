"""What the routes share: reading and checking a request, list parameters, answers, and building the
messages and threads several resources create."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from runner.server import checks, objects
from runner.server.body import read_object
from runner.server.errors import invalid, shown
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
