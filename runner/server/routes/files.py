"""`/files`: upload (multipart), list, retrieve, delete, download; and `/uploads`, the large-file protocol
(create, add parts, complete, cancel) the SDK's `uploads.upload_file_chunked` speaks.

A file's bytes go to the backend's blob store (content-addressed, beside the database); its metadata is an
object in the store, whose private state names its blob. Limits: a file of at most `MAX_FILE_BYTES`, by
either route; an Upload's part at most `MAX_PART_BYTES`, as the API's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from runner.server import checks, objects
from runner.server.body import read_form
from runner.server.errors import APIError, invalid, shown
from runner.server.routes.common import json_response, list_args, read_body

if TYPE_CHECKING:
    from runner.server.app import Backend
    from runner.server.routes import Handler

MAX_FILE_BYTES = 512 * 1024 * 1024  # the API's limit for one file
MAX_PART_BYTES = 64 * 1024 * 1024  # the API's limit for one part of an Upload
_FORM_OVERHEAD = 64 * 1024  # room for the multipart boundaries and the text fields around the file
_NESTED = re.compile(r"^([a-z_]+)\[([a-z_]+)\]$")  # how the SDK writes an object in a form: expires_after[seconds]


def _form_params(fields: dict[str, str], schema: str) -> dict[str, Any]:
    """A form's text fields as the request's parameters: `a[b]` fields gathered into objects, integers parsed
    where the schema wants them, then checked as any JSON request is."""
    params: dict[str, Any] = {}
    for name, value in fields.items():
        nested = _NESTED.match(name)
        if nested:
            holder = params.setdefault(nested.group(1), {})
            if not isinstance(holder, dict):
                raise invalid(f"'{shown(nested.group(1))}' is given both as a value and as an object.", name)
            holder[nested.group(2)] = value
        else:
            params[name] = value
    expires = params.get("expires_after")
    if isinstance(expires, dict) and isinstance(expires.get("seconds"), str):
        seconds = expires["seconds"]
        if not seconds.isascii() or not seconds.isdigit():
            raise invalid(f"Invalid 'expires_after.seconds': expected an integer, but got '{shown(seconds)}'.",
                          "expires_after.seconds")
        expires["seconds"] = int(seconds)
    checks.check(schema, params)
    return params


async def _file_form(request: Request, schema: str, field: str, limit: int) -> tuple[dict[str, Any], Any]:
    """A multipart body holding one file in `field` (at most `limit` bytes, with room for the form) and text
    fields checked as `schema`: the parameters and the uploaded file."""
    fields, uploaded = await read_form(request, limit + _FORM_OVERHEAD, (field,))
    params = _form_params(fields, schema)
    if field not in uploaded:
        raise invalid(f"Missing required parameter: '{field}'.", field)
    return params, uploaded[field]


async def _stored(b: Backend, upload: Any, field: str, limit: int, what: str, code: str) -> tuple[str, int]:
    """An uploaded file's bytes put in the blob store (the upload closed): their SHA-256 and size; 413 `code`,
    and nothing kept, past `limit` bytes."""
    try:
        sha, size = b.blobs.put_file(upload.file)
    finally:
        await upload.close()
    if size > limit:
        b.discard_unheld(sha)
        raise APIError(413, f"The {what} is {size} bytes; the maximum is {limit} bytes.", param=field, code=code)
    return sha, size


async def create_file(b: Backend, request: Request) -> Response:
    """POST /files: a multipart upload of one file with its purpose."""
    params, upload = await _file_form(request, "CreateFileRequest", "file", MAX_FILE_BYTES)
    if params["purpose"] == "evals":  # the hosted Evals were shut down on 2026-11-30; this backend has none
        await upload.close()
        raise invalid("Files with purpose 'evals' are not supported by this backend.", "purpose")
    sha, size = await _stored(b, upload, "file", MAX_FILE_BYTES, "file", "file_too_large")
    body = objects.file(upload.filename or "file", size, params["purpose"], params.get("expires_after"))
    return json_response(b.store.insert("file", body, private={"sha256": sha, "mime_type": upload.content_type}))


async def list_files(b: Backend, request: Request) -> Response:
    """GET /files, newest first by default, optionally of one purpose."""
    args = list_args(request)
    purpose = request.query_params.get("purpose")
    matching = {"purpose": purpose} if purpose else None
    page = b.store.list("file", matching=matching, **args)
    now = objects.now()
    for expired in [f for f in page.data if f.get("expires_at") is not None and f["expires_at"] <= now]:
        _delete(b, expired["id"])
        page.data.remove(expired)
    return json_response(page.body())


def _live_file(b: Backend, file_id: str) -> dict[str, Any]:
    """The file, unless it has expired (then it is deleted now, and this is a 404 as for any unknown id)."""
    body = b.store.get("file", file_id)
    if body.get("expires_at") is not None and body["expires_at"] <= objects.now():
        _delete(b, file_id)
        b.store.get("file", file_id)  # raises the 404
    return body


def _delete(b: Backend, file_id: str) -> None:
    sha = b.store.private(file_id).get("sha256")
    b.store.delete("file", file_id)
    if sha:
        b.discard_unheld(sha)


async def get_file(b: Backend, request: Request) -> Response:
    """GET /files/{file_id}."""
    return json_response(_live_file(b, request.path_params["file_id"]))


async def delete_file(b: Backend, request: Request) -> Response:
    """DELETE /files/{file_id}; its bytes go when no other file holds them."""
    file_id = request.path_params["file_id"]
    _live_file(b, file_id)
    _delete(b, file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})


async def file_content(b: Backend, request: Request) -> Response:
    """GET /files/{file_id}/content: the bytes as uploaded."""
    file_id = request.path_params["file_id"]
    body = _live_file(b, file_id)
    private = b.store.private(file_id)
    sha = private["sha256"]
    chunks: Iterator[bytes] = iter(b.blobs.chunks(sha))
    disposition = f'attachment; filename="{_header_safe(body["filename"])}"'
    return StreamingResponse(chunks, media_type=private.get("mime_type") or "application/octet-stream",
                             headers={"content-length": str(body["bytes"]), "content-disposition": disposition})


def _header_safe(name: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)


# -- uploads --------------------------------------------------------------------------------------------

def _pending(b: Backend, upload_id: str) -> dict[str, Any]:
    upload = b.store.get("upload", upload_id)
    if upload["status"] == "pending" and upload["expires_at"] <= objects.now():
        upload = b.store.update("upload", {**upload, "status": "expired"})
        _drop_parts(b, upload_id)
    if upload["status"] != "pending":
        raise invalid(f"The upload {upload_id} is {upload['status']}: it takes no more parts.", "upload_id")
    return upload


async def create_upload(b: Backend, request: Request) -> Response:
    """POST /uploads: an Upload of `bytes` bytes, filled by parts and completed within the hour."""
    params = await read_body(request, "CreateUploadRequest")
    if not 0 < params["bytes"] <= MAX_FILE_BYTES:
        raise invalid(f"Invalid 'bytes': an upload holds 1 to {MAX_FILE_BYTES} bytes here.", "bytes")
    body = objects.upload(params)
    private = {"mime_type": params["mime_type"], "parts": [], "expires_after": params.get("expires_after")}
    return json_response(b.store.insert("upload", body, private=private))


async def add_upload_part(b: Backend, request: Request) -> Response:
    """POST /uploads/{upload_id}/parts: one part's bytes (multipart `data`)."""
    upload_id = request.path_params["upload_id"]
    _pending(b, upload_id)
    _, data = await _file_form(request, "AddUploadPartRequest", "data", MAX_PART_BYTES)
    sha, size = await _stored(b, data, "data", MAX_PART_BYTES, "part", "part_too_large")
    part = objects.upload_part(upload_id)
    b.store.insert("upload_part", part, parent=upload_id, private={"sha256": sha, "bytes": size})
    return json_response(part)


async def complete_upload(b: Backend, request: Request) -> Response:
    """POST /uploads/{upload_id}/complete: the parts, in the order given, become one File."""
    upload_id = request.path_params["upload_id"]
    upload = _pending(b, upload_id)
    params = await read_body(request, "CompleteUploadRequest")
    known = {part["id"] for part in b.store.children("upload_part", upload_id)}
    pieces = []
    for i, part_id in enumerate(params["part_ids"]):
        if part_id not in known:
            raise invalid(f"No part {shown(part_id)} was added to the upload {upload_id}.", f"part_ids[{i}]")
        pieces.append(b.store.private(part_id)["sha256"])
    if len(set(params["part_ids"])) != len(params["part_ids"]):
        raise invalid("A part is given more than once.", "part_ids")
    total = sum(b.store.private(part_id)["bytes"] for part_id in params["part_ids"])
    if total != upload["bytes"]:
        raise invalid(f"The parts hold {total} bytes, but the upload was created for {upload['bytes']}.",
                      "part_ids")
    digest = hashlib.md5(usedforsecurity=False)

    def joined() -> Iterator[bytes]:
        for sha in pieces:
            for chunk in b.blobs.chunks(sha):
                digest.update(chunk)
                yield chunk

    sha, size = b.blobs.put(joined())
    if "md5" in params and params["md5"].lower() != digest.hexdigest():
        b.discard_unheld(sha)
        raise invalid("The md5 given does not match the bytes uploaded.", "md5")
    private = b.store.private(upload_id)
    file = objects.file(upload["filename"], size, upload["purpose"], private.get("expires_after"))
    completed = {**upload, "status": "completed", "file": file}
    with b.store.transaction():
        b.store.insert("file", file, private={"sha256": sha, "mime_type": private.get("mime_type")})
        b.store.update("upload", completed)
    _drop_parts(b, upload_id)
    return json_response(completed)


async def cancel_upload(b: Backend, request: Request) -> Response:
    """POST /uploads/{upload_id}/cancel: no more parts; the parts' bytes are dropped."""
    upload_id = request.path_params["upload_id"]
    upload = _pending(b, upload_id)
    await read_body(request, "")
    cancelled = b.store.update("upload", {**upload, "status": "cancelled"})
    _drop_parts(b, upload_id)
    return json_response(cancelled)


def _drop_parts(b: Backend, upload_id: str) -> None:
    """Delete an Upload's parts and the bytes no one else holds."""
    parts = b.store.children("upload_part", upload_id)
    pieces = {b.store.private(part["id"])["sha256"] for part in parts}
    with b.store.transaction():
        for part in parts:
            b.store.delete("upload_part", part["id"])
    for piece in pieces:
        b.discard_unheld(piece)


ROUTES: list[tuple[str, str, Handler]] = [
    ("/files", "POST", create_file),
    ("/files", "GET", list_files),
    ("/files/{file_id}", "GET", get_file),
    ("/files/{file_id}", "DELETE", delete_file),
    ("/files/{file_id}/content", "GET", file_content),
    ("/uploads", "POST", create_upload),
    ("/uploads/{upload_id}/parts", "POST", add_upload_part),
    ("/uploads/{upload_id}/complete", "POST", complete_upload),
    ("/uploads/{upload_id}/cancel", "POST", cancel_upload),
]
