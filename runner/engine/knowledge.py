"""A batch's knowledge files on one backend: each file uploaded once (by its path and the SHA-256 of its
contents), each set of files indexed once in a vector store and waited for until indexed, and what was made
remembered, to delete it from a remote endpoint afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.engine.calls import idempotent, poll
from runner.engine.once import Once
from runner.spec.model import KnowledgeFile

if TYPE_CHECKING:
    from openai import AsyncOpenAI

UPLOADS_AT_ONCE = 8  # concurrent uploads of one backend: a 500-file spec must not open 500 requests at once


class KnowledgeError(Exception):
    """Knowledge files that could not be uploaded or indexed; `cause` is the backend's error, when there is one."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Uploaded:
    """A knowledge file on the backend."""

    path: str  # as the spec names it, relative to its folder
    file_id: str
    name: str  # the file name it was uploaded with, which searches and citations show

    def record(self) -> dict[str, str]:
        """What a transcript shows of it."""
        return {"path": self.path, "file_id": self.file_id, "file_name": self.name}


@dataclass(frozen=True)
class Store:
    """A vector store holding a set of knowledge files, indexed (or the reason it could not be)."""

    id: str
    files: tuple[Uploaded, ...]
    problem: str | None = None  # which files failed to index, and why


class Knowledge:
    """The knowledge files and vector stores of a batch on one backend, shared by its conversations."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self.client = client  # its files and vector_stores resources load on first use: most batches have none
        self._uploads: Once[Uploaded] = Once()
        self._stores: Once[Store] = Once()
        self._digests: dict[tuple[str, int, int, int], str] = {}
        self._slots = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self.created_files: list[str] = []
        self.created_stores: list[str] = []

    async def upload(self, file: KnowledgeFile) -> Uploaded:
        """The file on the backend, uploaded (`purpose: assistants`) unless this batch already has it."""
        digest = await self._digest(file)
        return await self._uploads.get((file.path, digest), lambda: self._upload(file, digest))

    async def store(self, files: Sequence[KnowledgeFile], *, shared: bool = True) -> Store:
        """A vector store of `files`, indexed: the batch's one for this set of files (paths and contents), or
        with `shared=False` a new one (a thread's, which its attachments will join); raise KnowledgeError when
        a file could not be indexed, naming it and the backend's last_error."""
        uploaded = tuple(await asyncio.gather(*(self.upload(f) for f in files)))
        if shared:  # a file id stands for its path and contents: equal keys are the same files
            made = await self._stores.get(tuple(u.file_id for u in uploaded), lambda: self._index(uploaded))
        else:
            made = await self._index(uploaded)
        if made.problem is not None:
            raise KnowledgeError(made.problem)
        return made

    async def extend(self, store: Store | None, files: Sequence[KnowledgeFile]) -> Store:
        """`store` (a conversation's own, None for none yet) with `files` added and indexed, or a new store of them:
        where a Responses conversation's attachments go, as a thread's go to its store; KnowledgeError as `store`."""
        uploaded = tuple(await asyncio.gather(*(self.upload(f) for f in files)))
        if store is None:
            made = await self._index(uploaded)
        else:
            new = tuple(u for u in uploaded if u not in store.files)
            made = Store(store.id, store.files + new)
            if new:
                made = await self._add(made, new)
        if made.problem is not None:
            raise KnowledgeError(made.problem)
        return made

    async def _add(self, store: Store, files: tuple[Uploaded, ...]) -> Store:
        batches = self.client.vector_stores.file_batches
        try:
            batch = await batches.create(store.id, file_ids=[f.file_id for f in files], **idempotent())
            await poll(batch, lambda: batches.with_raw_response.retrieve(batch.id, vector_store_id=store.id),
                       lambda b: b.status != "in_progress")
            problem = await self._problem(await self.client.vector_stores.retrieve(store.id), store.files)
        except Exception as exc:
            raise KnowledgeError(f"indexing {_listed(files)}", exc) from exc
        return Store(store.id, store.files, problem)

    def made(self, store_id: str) -> bool:
        """True when this batch made the vector store (and deletes it at its end)."""
        return store_id in self.created_stores

    async def delete_created(self) -> None:
        """Delete the vector stores, then the files, this batch made (remote backends, unless --keep)."""
        for store_id in self.created_stores:
            with contextlib.suppress(Exception):  # cleanup is best effort: the verdicts are already in
                await self.client.vector_stores.delete(store_id)
        for file_id in self.created_files:
            with contextlib.suppress(Exception):
                await self.client.files.delete(file_id)
        self.created_stores.clear()
        self.created_files.clear()

    async def _digest(self, file: KnowledgeFile) -> str:
        """The SHA-256 of the file's contents, read once per batch while the file stays the same."""
        try:
            info = os.stat(file.location)
        except OSError as exc:
            raise KnowledgeError(f"reading {file.path}: {exc.strerror}") from None
        key = (file.location, info.st_mtime_ns, info.st_size, info.st_ino)
        if key not in self._digests:
            self._digests[key] = await asyncio.to_thread(_sha256, file.location)
        return self._digests[key]

    async def _upload(self, file: KnowledgeFile, digest: str) -> Uploaded:
        async with self._slots:
            try:
                data = await asyncio.to_thread(_read, file.location)
            except OSError as exc:
                raise KnowledgeError(f"reading {file.path}: {exc.strerror}") from None
            # a boundary of the contents' digest, not a random one: the same upload is the same request body,
            # which a cassette can replay
            headers = {**idempotent()["extra_headers"],
                       "Content-Type": f"multipart/form-data; boundary=runner-{digest[:40]}"}
            try:
                created = await self.client.files.create(file=(file.name, data), purpose="assistants",
                                                         extra_headers=headers)
            except Exception as exc:
                raise KnowledgeError(f"uploading {file.path}", exc) from exc
        self.created_files.append(created.id)
        return Uploaded(file.path, created.id, file.name)

    async def _index(self, files: tuple[Uploaded, ...]) -> Store:
        stores = self.client.vector_stores
        try:
            store = await stores.create(file_ids=[f.file_id for f in files], name="runner knowledge", **idempotent())
            self.created_stores.append(store.id)
            store = await poll(store, lambda: stores.with_raw_response.retrieve(store.id),
                               lambda s: s.status != "in_progress")
            problem = await self._problem(store, files)
        except Exception as exc:
            raise KnowledgeError(f"indexing {_listed(files)}", exc) from exc
        return Store(store.id, files, problem)

    async def _problem(self, store: Any, files: tuple[Uploaded, ...]) -> str | None:
        """Why the store cannot be searched as the spec means: the files that failed, with their last_error."""
        if store.status == "expired":
            return f"the vector store of {_listed(files)} expired before it was indexed"
        counts = store.file_counts
        if not (counts.failed or counts.cancelled):
            return None
        paths = {f.file_id: f.path for f in files}
        page = await self.client.vector_stores.files.list(store.id, filter="failed", limit=100)
        failed = [f"{paths.get(f.id, f.id)} failed: {_last_error(f)}" for f in page.data]
        if counts.cancelled:
            failed.append(f"{counts.cancelled} file(s) were cancelled")
        return "indexing the knowledge files: " + "; ".join(failed or [f"{counts.failed} file(s) failed"])


def _last_error(file: Any) -> str:
    error = getattr(file, "last_error", None)
    return f"{error.code}: {error.message}" if error is not None else "no reason given"


def _listed(files: tuple[Uploaded, ...]) -> str:
    shown = ", ".join(f.path for f in files[:3])
    return shown + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def _read(location: str) -> bytes:
    with open(location, "rb") as handle:
        return handle.read()


def _sha256(location: str) -> str:
    digest = hashlib.sha256()
    with open(location, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
