"""The backend's objects, built from the official SDK's types so their shape cannot drift from the API.

New objects go through the SDK's pydantic models once, and so does every change a request makes
(`revalidated`): what a client sends that the type refuses is a 400 naming the parameter. The executor's
own changes (status, timestamps) are made on the stored JSON, and the conformance tests validate every
body against the types.
"""

from __future__ import annotations

import time
from typing import Any

import pydantic
from openai.types.beta.assistant import Assistant
from openai.types.beta.thread import Thread
from openai.types.beta.threads.message import Message
from openai.types.beta.threads.run import Run
from openai.types.beta.threads.runs.run_step import RunStep
from openai.types.file_object import FileObject
from openai.types.upload import Upload
from openai.types.uploads.upload_part import UploadPart
from openai.types.vector_store import VectorStore
from openai.types.vector_stores.vector_store_file import VectorStoreFile
from openai.types.vector_stores.vector_store_file_batch import VectorStoreFileBatch

from runner.server.errors import invalid
from runner.server.ids import new_id

RUN_EXPIRY_SECONDS = 600


def now() -> int:
    """Unix time in seconds, the API's timestamp unit."""
    return int(time.time())


_TYPES: dict[str, type[pydantic.BaseModel]] = {
    "assistant": Assistant, "thread": Thread, "message": Message, "run": Run, "run_step": RunStep,
    "vector_store": VectorStore, "vector_store_file": VectorStoreFile, "vector_store_file_batch": VectorStoreFileBatch,
}


def _param(loc: tuple[int | str, ...], data: Any, missing: bool) -> str:
    """The request parameter a validation error's location points at, found by walking the input.

    Steps that are not in the input are the names of union members pydantic tried (`FunctionTool`),
    except a missing field, the last step of its location.
    """
    path = ""
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data):
            path, data = f"{path}[{part}]", data[part]
        elif isinstance(part, str) and isinstance(data, dict) and (part in data or (missing and i == len(loc) - 1)):
            path, data = f"{path}.{part}" if path else part, data.get(part)
        elif not isinstance(data, dict | list):
            break
    return path


def _validate(model: type[pydantic.BaseModel], data: dict[str, Any], param: str = "") -> dict[str, Any]:
    """`data` validated by the SDK's type and dumped back; 400 naming the offending parameter when invalid.

    `param` prefixes the parameter named (`thread.messages[0]` for a message given inside a thread).
    """
    try:
        validated = model.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = [(_param(e["loc"], data, e["type"] == "missing"), e) for e in exc.errors()]
        # pydantic reports every union member it tried: the deepest location is the one that nearly fit
        where, error = max(errors, key=lambda pair: len(pair[0]))
        where = f"{param}.{where}" if param and where else param or where or "body"
        if error["type"] == "missing":
            raise invalid(f"Missing required parameter: '{where}'.", where) from None
        raise invalid(f"Invalid value for '{where}': {error['msg']}.", where) from None
    return _dump(validated)


def _dump(model: Any) -> dict[str, Any]:
    # only what we set: nested optionals the API omits must not come back as nulls; by alias, because
    # the SDK renames some wire fields in Python (json_schema.schema is `schema_`)
    body: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return body


def revalidated(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A changed object checked against its SDK type (400 naming the parameter that broke it)."""
    return _validate(_TYPES[kind], body)


def assistant(params: dict[str, Any]) -> dict[str, Any]:
    """A new assistant from create parameters."""
    return _validate(Assistant, {
        "id": new_id("asst_"), "object": "assistant", "created_at": now(),
        "name": params.get("name"), "description": params.get("description"), "model": params["model"],
        "instructions": params.get("instructions"), "tools": params.get("tools") or [],
        "metadata": params.get("metadata") or {}, "temperature": params.get("temperature", 1.0),
        "top_p": params.get("top_p", 1.0), "response_format": params.get("response_format", "auto"),
        "tool_resources": params.get("tool_resources") or {},
    })


def thread(params: dict[str, Any], *, param: str = "") -> dict[str, Any]:
    """A new thread from create parameters (its initial messages are created separately)."""
    return _validate(Thread, {
        "id": new_id("thread_"), "object": "thread", "created_at": now(),
        "metadata": params.get("metadata") or {}, "tool_resources": params.get("tool_resources") or {},
    }, param)


def text_content(text: str, annotations: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Message content holding one text part (with its annotations: the citations in it)."""
    return [{"type": "text", "text": {"value": text, "annotations": annotations or []}}]


def message(
    thread_id: str, role: str, content: list[dict[str, Any]], *, run_id: str | None = None,
    assistant_id: str | None = None, status: str = "completed", metadata: dict[str, str] | None = None,
    attachments: list[Any] | None = None, param: str = "",
) -> dict[str, Any]:
    """A new message in a thread (`param`: where the request gave it, for errors)."""
    created = now()
    return _validate(Message, {
        "id": new_id("msg_"), "object": "thread.message", "created_at": created, "thread_id": thread_id,
        "status": status, "incomplete_details": None, "completed_at": created if status == "completed" else None,
        "incomplete_at": None, "role": role, "content": content, "assistant_id": assistant_id, "run_id": run_id,
        "attachments": attachments or [], "metadata": metadata or {},
    }, param)


def run(thread_id: str, asst: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A new queued run of an assistant on a thread, with the run's overrides applied."""
    created = now()
    instructions = params.get("instructions")
    if instructions is None:
        instructions = asst.get("instructions") or ""
    if params.get("additional_instructions"):
        instructions = f"{instructions}\n\n{params['additional_instructions']}" if instructions else params[
            "additional_instructions"]
    return _validate(Run, {
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
    })


def run_step(run_body: dict[str, Any], step_details: dict[str, Any]) -> dict[str, Any]:
    """A new in-progress step of a run (`message_creation` or `tool_calls`)."""
    return _validate(RunStep, {
        "id": new_id("step_"), "object": "thread.run.step", "created_at": now(),
        "assistant_id": run_body["assistant_id"], "thread_id": run_body["thread_id"], "run_id": run_body["id"],
        "type": step_details["type"], "status": "in_progress", "step_details": step_details,
        "last_error": None, "expired_at": None, "cancelled_at": None, "failed_at": None, "completed_at": None,
        "metadata": {}, "usage": None,
    })


def conversation(metadata: dict[str, str] | None) -> dict[str, Any]:
    """A new conversation (its items are stored separately)."""
    from openai.types.conversations.conversation import Conversation

    return _validate(Conversation, {"id": new_id("conv_"), "object": "conversation", "created_at": now(),
                                    "metadata": metadata or {}})


def validated_response(body: dict[str, Any]) -> dict[str, Any]:
    """A response checked by the SDK's `Response` type (400 naming the parameter that broke it)."""
    from openai.types.responses.response import Response

    return _validate(Response, body)


def file(filename: str, size: int, purpose: str, expires_after: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new file object (its bytes are kept in the blob store)."""
    created = now()
    body: dict[str, Any] = {"id": new_id("file-"), "object": "file", "bytes": size, "created_at": created,
                            "filename": filename, "purpose": purpose, "status": "processed"}
    if expires_after:  # absent, not null, when the file does not expire (as the reference has it)
        body["expires_at"] = created + int(expires_after["seconds"])
    return _validate(FileObject, body)


UPLOAD_EXPIRY_SECONDS = 3600  # an Upload not completed within an hour expires, as the API's do


def upload(params: dict[str, Any]) -> dict[str, Any]:
    """A new pending Upload from create parameters."""
    created = now()
    return _validate(Upload, {
        "id": new_id("upload_"), "object": "upload", "created_at": created, "filename": params["filename"],
        "bytes": params["bytes"], "purpose": params["purpose"], "status": "pending",
        "expires_at": created + UPLOAD_EXPIRY_SECONDS, "file": None,
    })


def upload_part(upload_id: str) -> dict[str, Any]:
    """A new part of an Upload."""
    return _validate(UploadPart, {"id": new_id("part_"), "object": "upload.part", "created_at": now(),
                                  "upload_id": upload_id})


DAY_SECONDS = 86_400
# the API's `auto` chunking, as a vector store file reports it
AUTO_CHUNKING: dict[str, Any] = {"type": "static",
                                 "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}


def file_counts(**counts: int) -> dict[str, int]:
    """A vector store's (or batch's) file counts, with their total."""
    kinds = ("in_progress", "completed", "failed", "cancelled")
    out = {kind: counts.get(kind, 0) for kind in kinds}
    out["total"] = sum(out.values())
    return out


def vector_store(params: dict[str, Any]) -> dict[str, Any]:
    """A new, empty vector store from create parameters (its files are added separately)."""
    created = now()
    body: dict[str, Any] = {
        "id": new_id("vs_"), "object": "vector_store", "created_at": created, "name": params.get("name") or "",
        "usage_bytes": 0, "file_counts": file_counts(), "status": "completed", "last_active_at": created,
        "metadata": params.get("metadata") or {}, "expires_at": expiry(created, params.get("expires_after")),
    }
    if params.get("expires_after"):  # absent, not null, without a policy (as the reference has it)
        body["expires_after"] = params["expires_after"]
    return _validate(VectorStore, body)


def expiry(last_active_at: int, expires_after: dict[str, Any] | None) -> int | None:
    """When a vector store expires under its policy (days after it was last active), or None."""
    return last_active_at + int(expires_after["days"]) * DAY_SECONDS if expires_after else None


def vector_store_file(vector_store_id: str, file_id: str, chunking: dict[str, Any] | None,
                      attributes: dict[str, Any] | None) -> dict[str, Any]:
    """A file being added to a vector store (`in_progress` until it is indexed)."""
    return _validate(VectorStoreFile, {
        "id": file_id, "object": "vector_store.file", "created_at": now(), "vector_store_id": vector_store_id,
        "status": "in_progress", "usage_bytes": 0, "last_error": None, "attributes": attributes or {},
        "chunking_strategy": chunking or AUTO_CHUNKING,
    })


def file_batch(vector_store_id: str, counts: dict[str, int]) -> dict[str, Any]:
    """A new batch of files being added to a vector store."""
    return _validate(VectorStoreFileBatch, {
        "id": new_id("vsfb_"), "object": "vector_store.files_batch", "created_at": now(),
        "vector_store_id": vector_store_id, "status": "in_progress", "file_counts": counts,
    })
