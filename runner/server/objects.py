"""The backend's objects, built from the official SDK's types so their shape cannot drift from the API.

New objects go through the SDK's pydantic models once; later changes (status, timestamps) are made
on the stored JSON by the executor, and the conformance tests validate every body against the types.
"""

from __future__ import annotations

import time
from typing import Any

from openai.types.beta.assistant import Assistant
from openai.types.beta.thread import Thread
from openai.types.beta.threads.message import Message
from openai.types.beta.threads.run import Run
from openai.types.beta.threads.runs.run_step import RunStep

from runner.server.ids import new_id

RUN_EXPIRY_SECONDS = 600
TERMINAL_RUN_STATUSES = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})


def now() -> int:
    """Unix time in seconds, the API's timestamp unit."""
    return int(time.time())


def _dump(model: Any) -> dict[str, Any]:
    # only what we set: nested optionals the API omits must not come back as nulls; by alias, because
    # the SDK renames some wire fields in Python (json_schema.schema is `schema_`)
    body: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return body


def assistant(params: dict[str, Any]) -> dict[str, Any]:
    """A new assistant from create parameters."""
    return _dump(Assistant.model_validate({
        "id": new_id("asst_"), "object": "assistant", "created_at": now(),
        "name": params.get("name"), "description": params.get("description"), "model": params["model"],
        "instructions": params.get("instructions"), "tools": params.get("tools") or [],
        "metadata": params.get("metadata") or {}, "temperature": params.get("temperature", 1.0),
        "top_p": params.get("top_p", 1.0), "response_format": params.get("response_format", "auto"),
        "tool_resources": params.get("tool_resources") or {},
    }))


def thread(params: dict[str, Any]) -> dict[str, Any]:
    """A new thread from create parameters (its initial messages are created separately)."""
    return _dump(Thread.model_validate({
        "id": new_id("thread_"), "object": "thread", "created_at": now(),
        "metadata": params.get("metadata") or {}, "tool_resources": params.get("tool_resources") or {},
    }))


def text_content(text: str) -> list[dict[str, Any]]:
    """Message content holding one text part."""
    return [{"type": "text", "text": {"value": text, "annotations": []}}]


def message(
    thread_id: str, role: str, content: list[dict[str, Any]], *, run_id: str | None = None,
    assistant_id: str | None = None, status: str = "completed", metadata: dict[str, str] | None = None,
    attachments: list[Any] | None = None,
) -> dict[str, Any]:
    """A new message in a thread."""
    created = now()
    return _dump(Message.model_validate({
        "id": new_id("msg_"), "object": "thread.message", "created_at": created, "thread_id": thread_id,
        "status": status, "incomplete_details": None, "completed_at": created if status == "completed" else None,
        "incomplete_at": None, "role": role, "content": content, "assistant_id": assistant_id, "run_id": run_id,
        "attachments": attachments or [], "metadata": metadata or {},
    }))


def run(thread_id: str, asst: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A new queued run of an assistant on a thread, with the run's overrides applied."""
    created = now()
    instructions = params.get("instructions")
    if instructions is None:
        instructions = asst.get("instructions") or ""
    if params.get("additional_instructions"):
        instructions = f"{instructions}\n\n{params['additional_instructions']}" if instructions else params[
            "additional_instructions"]
    return _dump(Run.model_validate({
        "id": new_id("run_"), "object": "thread.run", "created_at": created, "thread_id": thread_id,
        "assistant_id": asst["id"], "status": "queued", "required_action": None, "last_error": None,
        "expires_at": created + RUN_EXPIRY_SECONDS, "started_at": None, "cancelled_at": None, "failed_at": None,
        "completed_at": None, "incomplete_details": None, "model": params.get("model") or asst["model"],
        "instructions": instructions,
        "tools": params["tools"] if params.get("tools") is not None else asst.get("tools", []),
        "metadata": params.get("metadata") or {}, "usage": None,
        "temperature": params.get("temperature", asst.get("temperature")),
        "top_p": params.get("top_p", asst.get("top_p")),
        "max_prompt_tokens": params.get("max_prompt_tokens"),
        "max_completion_tokens": params.get("max_completion_tokens"),
        "truncation_strategy": params.get("truncation_strategy") or {"type": "auto", "last_messages": None},
        "response_format": params.get("response_format", asst.get("response_format", "auto")),
        "tool_choice": params.get("tool_choice", "auto"),
        "parallel_tool_calls": params.get("parallel_tool_calls", True),
    }))


def run_step(run_body: dict[str, Any], step_details: dict[str, Any]) -> dict[str, Any]:
    """A new in-progress step of a run (`message_creation` or `tool_calls`)."""
    return _dump(RunStep.model_validate({
        "id": new_id("step_"), "object": "thread.run.step", "created_at": now(),
        "assistant_id": run_body["assistant_id"], "thread_id": run_body["thread_id"], "run_id": run_body["id"],
        "type": step_details["type"], "status": "in_progress", "step_details": step_details,
        "last_error": None, "expired_at": None, "cancelled_at": None, "failed_at": None, "completed_at": None,
        "metadata": {}, "usage": None,
    }))
