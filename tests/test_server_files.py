"""The Files and Uploads APIs, driven by the official SDK in-process and over HTTP; every body checked with the
SDK's types (the SDK parses them) and, when the shared folder is beside the repo, the reference schemas."""

from __future__ import annotations

import asyncio
import copy
import hashlib
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import yaml
from conftest import run_async
from test_reference_conformance import _nullable_to_jsonschema

from runner.engine.backend import embedded_client
from runner.server.app import Backend, BackendSettings
from runner.server.routes import files as file_routes

FILES_REFERENCE = (Path(__file__).resolve().parents[2] / "shared" / "reference"
                   / "openai-files-vector-stores.openapi.yaml")


def _reference_check(schema: str, body: dict[str, Any]) -> None:
    """Validate `body` against a schema of the files reference (nothing to do where it is absent)."""
    if not FILES_REFERENCE.exists():
        return
    components = _nullable_to_jsonschema(yaml.safe_load(FILES_REFERENCE.read_text(encoding="utf-8"))["components"])
    root = {**copy.deepcopy({"$ref": f"#/components/schemas/{schema}"}), "components": components}
    errors = list(jsonschema.Draft4Validator(root).iter_errors(body))
    assert not errors, f"{schema}: " + "; ".join(e.message for e in errors[:5])


def _with_client(test: Any, settings: BackendSettings | None = None) -> Any:
    async def go() -> Any:
        backend = Backend(settings)
        client = embedded_client(backend)
        try:
            return await test(client, backend)
        finally:
            await client.close()
    return run_async(go())


def test_the_sdk_drives_every_files_method() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        first = await client.files.create(file=("notes.txt", b"alpha\n", "text/plain"), purpose="assistants")
        second = await client.files.create(file=("data.csv", b"a,b\n1,2\n", "text/csv"), purpose="user_data",
                                           expires_after={"anchor": "created_at", "seconds": 3600})
        _reference_check("OpenAIFile", first.model_dump(mode="json", exclude_unset=True))
        assert (first.filename, first.bytes, first.purpose, first.expires_at) == ("notes.txt", 6, "assistants", None)
        assert second.expires_at == second.created_at + 3600
        assert [f.id for f in (await client.files.list()).data] == [second.id, first.id]  # newest first
        assert [f.id for f in (await client.files.list(order="asc", limit=1)).data] == [first.id]
        page = await client.files.list(order="asc", after=first.id)
        assert [f.id for f in page.data] == [second.id] and not page.has_more
        assert [f.id for f in (await client.files.list(purpose="assistants")).data] == [first.id]
        _reference_check("ListFilesResponse", (await client.files.list()).model_dump(mode="json", exclude_unset=True))
        assert (await client.files.retrieve(first.id)).model_dump() == first.model_dump()
        assert (await client.files.content(second.id)).read() == b"a,b\n1,2\n"
        deleted = await client.files.delete(first.id)
        _reference_check("DeleteFileResponse", deleted.model_dump(mode="json", exclude_unset=True))
        assert deleted.deleted and deleted.id == first.id
        with pytest.raises(openai.NotFoundError, match="No file found with id"):
            await client.files.retrieve(first.id)

    _with_client(test)


def test_the_same_bytes_are_stored_once_and_removed_with_the_last_file() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        one = await client.files.create(file=("a.txt", b"same bytes", "text/plain"), purpose="assistants")
        two = await client.files.create(file=("b.txt", b"same bytes", "text/plain"), purpose="assistants")
        blob = backend.blobs.path(hashlib.sha256(b"same bytes").hexdigest())
        assert blob.is_file() and len([p for p in backend.blobs.folder.iterdir() if not p.name.startswith(".")]) == 1
        await client.files.delete(one.id)
        assert blob.is_file() and (await client.files.content(two.id)).read() == b"same bytes"
        await client.files.delete(two.id)
        assert not blob.exists()

    _with_client(test)


def test_the_embedded_backend_keeps_bytes_in_a_folder_that_goes_with_it() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> Path:
        await client.files.create(file=("a.txt", b"x", "text/plain"), purpose="assistants")
        assert backend.blobs.temporary and backend.blobs.folder.is_dir()
        return backend.blobs.folder

    folder = _with_client(test)
    assert not folder.exists()


def test_the_sdks_chunked_upload_makes_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes in parts of 4,096
    source = tmp_path / "big.bin"
    source.write_bytes(data)

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        upload = await client.uploads.upload_file_chunked(file=source, mime_type="application/octet-stream",
                                                          purpose="assistants", part_size=4096,
                                                          md5=hashlib.md5(data).hexdigest())
        _reference_check("Upload", upload.model_dump(mode="json", exclude_unset=True))
        assert upload.status == "completed" and upload.file is not None and upload.file.bytes == len(data)
        assert (await client.files.content(upload.file.id)).read() == data
        parts = [p for p in backend.blobs.folder.iterdir() if not p.name.startswith(".")]
        assert len(parts) == 1  # the parts' bytes went once the file was made

    _with_client(test)


def test_uploads_refuse_what_does_not_add_up() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        upload = await client.uploads.create(filename="a.txt", purpose="assistants", bytes=6, mime_type="text/plain")
        part = await client.uploads.parts.create(upload.id, data=b"abc")
        _reference_check("UploadPart", part.model_dump(mode="json", exclude_unset=True))
        with pytest.raises(openai.BadRequestError) as short:
            await client.uploads.complete(upload.id, part_ids=[part.id])
        assert short.value.body["param"] == "part_ids"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.uploads.complete(upload.id, part_ids=["part_nope"])
        assert unknown.value.body["param"] == "part_ids[0]"  # type: ignore[index]
        other = await client.uploads.parts.create(upload.id, data=b"def")
        with pytest.raises(openai.BadRequestError) as md5:
            await client.uploads.complete(upload.id, part_ids=[part.id, other.id], md5="0" * 32)
        assert md5.value.body["param"] == "md5"  # type: ignore[index]
        cancelled = await client.uploads.cancel(upload.id)
        assert cancelled.status == "cancelled"
        with pytest.raises(openai.BadRequestError, match="is cancelled"):
            await client.uploads.parts.create(upload.id, data=b"ghi")
        assert [p for p in backend.blobs.folder.iterdir() if not p.name.startswith(".")] == []

    _with_client(test)


def test_an_upload_not_completed_within_the_hour_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.server import objects

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        upload = await client.uploads.create(filename="a.txt", purpose="assistants", bytes=1, mime_type="text/plain")
        later = upload.created_at + objects.UPLOAD_EXPIRY_SECONDS
        monkeypatch.setattr(objects, "now", lambda: later)
        with pytest.raises(openai.BadRequestError, match="is expired"):
            await client.uploads.parts.create(upload.id, data=b"x")

    _with_client(test)


def test_an_expired_file_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.server import objects

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        made = await client.files.create(file=("a.txt", b"x", "text/plain"), purpose="assistants",
                                         expires_after={"anchor": "created_at", "seconds": 3600})
        monkeypatch.setattr(objects, "now", lambda: made.created_at + 3600)
        assert (await client.files.list()).data == []
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(made.id)

    _with_client(test)


@pytest.mark.parametrize(("fields", "files", "param"), [
    ({"purpose": "assistants"}, {}, "file"),
    ({}, {"file": ("a.txt", b"x", "text/plain")}, "purpose"),
    ({"purpose": "homework"}, {"file": ("a.txt", b"x", "text/plain")}, "purpose"),
    ({"purpose": "evals"}, {"file": ("a.txt", b"x", "text/plain")}, "purpose"),
    ({"purpose": "assistants", "expires_after[anchor]": "created_at", "expires_after[seconds]": "10"},
     {"file": ("a.txt", b"x", "text/plain")}, "expires_after.seconds"),
    ({"purpose": "assistants", "expires_after[anchor]": "created_at", "expires_after[seconds]": "٣٦٠٠"},
     {"file": ("a.txt", b"x", "text/plain")}, "expires_after.seconds"),
    ({"purpose": "assistants", "file": "not a file"}, {}, "file"),
    ({"purpose": "assistants", "colour": "red"}, {"file": ("a.txt", b"x", "text/plain")}, "colour"),
])
def test_a_bad_file_upload_is_a_400_naming_the_param(fields: dict[str, str], files: dict[str, Any],
                                                     param: str) -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        parts = {name: (None, value) for name, value in fields.items()} | files  # text fields, then the file
        response = await client._client.post("/files", files=parts)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error"

    _with_client(test)


def test_a_json_body_on_the_multipart_route_is_refused() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        response = await client._client.post("/files", json={"purpose": "assistants"})
        assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]["message"]

    _with_client(test)


def test_a_file_over_the_limit_is_a_413_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_routes, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(file_routes, "_FORM_OVERHEAD", 10_000)

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        with pytest.raises(openai.APIStatusError) as too_big:
            await client.files.create(file=("a.bin", b"x" * 5000, "application/octet-stream"), purpose="assistants")
        assert too_big.value.status_code == 413
        assert too_big.value.body["code"] == "file_too_large"  # type: ignore[index]
        assert [p for p in backend.blobs.folder.iterdir()] == []
        assert (await client.files.list()).data == []

    _with_client(test)


def test_files_survive_a_restart_of_runner_serve(tmp_path: Path) -> None:
    from serve_process import serving

    with serving(tmp_path, "--provider", "echo") as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        made = client.files.create(file=("kept.txt", b"kept across restarts", "text/plain"), purpose="assistants")
    assert (tmp_path / "backend.sqlite3.files").is_dir()
    with serving(tmp_path, "--provider", "echo") as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        assert client.files.retrieve(made.id).filename == "kept.txt"
        assert client.files.content(made.id).read() == b"kept across restarts"
        big = client.uploads.create(filename="p.txt", purpose="assistants", bytes=4, mime_type="text/plain")
        part = client.uploads.parts.create(big.id, data=b"abcd")
        assert client.uploads.complete(big.id, part_ids=[part.id]).file.bytes == 4  # type: ignore[union-attr]


def test_content_streams_the_bytes_as_uploaded_with_their_type() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        made = await client.files.create(file=("résumé.md", "# Héllo\n".encode(), "text/markdown"),
                                         purpose="assistants")
        response = await client._client.get(f"/files/{made.id}/content")
        assert response.status_code == 200 and response.content == "# Héllo\n".encode()
        assert response.headers["content-type"].startswith("text/markdown")
        assert response.headers["content-disposition"] == 'attachment; filename="r_sum_.md"'

    _with_client(test)


def test_concurrent_uploads_of_the_same_bytes_share_one_blob() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        made = await asyncio.gather(*(client.files.create(file=(f"{i}.txt", b"shared", "text/plain"),
                                                          purpose="assistants") for i in range(8)))
        assert len({m.id for m in made}) == 8
        assert len([p for p in backend.blobs.folder.iterdir() if not p.name.startswith(".")]) == 1

    _with_client(test)

