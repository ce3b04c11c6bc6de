"""The code interpreter as a run uses it: a thread's files in, the code run in the thread's session, and what it
made out as Files.

The run's files (`tool_resources.code_interpreter.file_ids` of the assistant and the thread, where attachments go
too) are written to /mnt/data under their names before a call, once per session; files the call created or
changed and the figures it showed become Files with purpose `assistants_output`, downloadable through the Files
API, whose ids the run step and the reply carry.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.server import objects
from runner.server.tools.code_interpreter.limits import CodeLimits

if TYPE_CHECKING:
    from runner.server.blobs import BlobStore
    from runner.server.store import Store
    from runner.server.tools.code_interpreter.manager import SessionManager
    from runner.server.tools.code_interpreter.sandbox import SandboxConfig

SANDBOX_PREFIX = "sandbox:"  # how a reply links a file of /mnt/data, as the hosted API's models wrote it


@dataclass
class CodeCall:
    """One call's outcome, in the shapes a run needs."""

    outputs: list[dict[str, Any]]  # the step's `code_interpreter.outputs`: logs, then images
    model_output: str  # what the model reads of the call
    images: list[str] = field(default_factory=list)  # file ids of the figures shown
    files: dict[str, str] = field(default_factory=dict)  # /mnt/data path -> file id, of the files written
    error: str | None = None


class CodeInterpreter:
    """Runs code for runs, one sandboxed session per thread (made on first use, ended with the thread)."""

    def __init__(self, store: Store, blobs: BlobStore, limits: CodeLimits, config: SandboxConfig | None = None) -> None:
        self.store = store
        self.blobs = blobs
        self.limits = limits
        self.config = config  # which bwrap and Python (None: the defaults)
        self._manager: SessionManager | None = None
        self._written: dict[str, tuple[str | None, set[str]]] = {}  # thread -> (its session, file ids written)

    @property
    def manager(self) -> SessionManager:
        """The sessions (the manager made on first use, so a backend that runs no code starts no thread)."""
        if self._manager is None:
            from runner.server.tools.code_interpreter.manager import SessionManager

            self._manager = SessionManager(limits=self.limits, config=self.config)
        return self._manager

    async def check(self) -> None:
        """Start a sandbox once: SandboxUnavailable, saying what to install, when none can be started."""
        await self.manager.check()

    async def call(self, thread_id: str, file_ids: list[str], code: str) -> CodeCall:
        """Run `code` in the thread's session with the run's files in /mnt/data; ModelError (the run's failure)
        when no sandbox can be started. Whatever the code does is an outcome, not an error."""
        from runner.server.providers.base import ModelError
        from runner.server.tools.code_interpreter.sandbox import SandboxError

        try:
            await self._write_inputs(thread_id, file_ids)
            result = await self.manager.run(thread_id, code)
        except SandboxError as exc:  # no sandbox could start: the run fails saying why, never runs code without one
            raise ModelError(f"code_interpreter: {exc}") from None
        made: dict[str, str] = {}
        for path in result.files:
            try:
                data = await self.manager.read_file(thread_id, path)
            except (OSError, KeyError):  # gone, or not a regular file any more: nothing to offer
                continue
            made[path] = self._store_file(posixpath.basename(path), data)
        images = [self._store_file(f"image-{i}.png", png) for i, png in enumerate(result.images, start=1)]
        outputs: list[dict[str, Any]] = []
        if result.logs:
            outputs.append({"type": "logs", "logs": result.logs})
        outputs += [{"type": "image", "image": {"file_id": file_id}} for file_id in images]
        return CodeCall(outputs=outputs, model_output=_model_output(result.logs, made, len(images)), images=images,
                        files=made, error=result.error)

    async def forget(self, thread_id: str) -> None:
        """End a deleted thread's session and its files."""
        self._written.pop(thread_id, None)
        if self._manager is not None:
            await self._manager.close(thread_id)

    async def aclose(self) -> None:
        """End every session (the backend shuts down)."""
        if self._manager is not None:
            await self._manager.aclose()

    async def _write_inputs(self, thread_id: str, file_ids: list[str]) -> None:
        """Write the run's files the thread's session does not have yet (a new session has none)."""
        session, written = self._written.get(thread_id, (None, set()))
        if session != self.manager.session_folder(thread_id):
            written = set()
        named: dict[str, bytes] = {}
        for file_id in file_ids:
            if file_id in written:
                continue
            try:
                file, private = self.store.get_with_private("file", file_id)
            except Exception:  # deleted since it was attached: the run goes on without it
                continue
            named[_input_name(file["filename"], file_id)] = self.blobs.read(private["sha256"])
            written.add(file_id)
        for name, data in named.items():
            try:
                await self.manager.write_files(thread_id, {name: data})
            except OSError:  # the code left a folder under that name: its files win, the call goes on
                continue
        self._written[thread_id] = (self.manager.session_folder(thread_id), written)

    def _store_file(self, name: str, data: bytes) -> str:
        """Keep bytes the code made as a File (`assistants_output`); its id."""
        sha, size = self.blobs.put([data])
        body = objects.file(name, size, "assistants_output")
        mime = "image/png" if name.endswith(".png") else None
        return str(self.store.insert("file", body, private={"sha256": sha, "mime_type": mime})["id"])


def _input_name(filename: str, file_id: str) -> str:
    """The name a file gets in /mnt/data: its own base name, or its id where that is no file name there."""
    name = posixpath.basename(filename.replace("\\", "/"))
    if name in ("", ".", "..") or "\0" in name or len(name.encode()) > 255:
        return file_id
    return name


def _model_output(logs: str, files: dict[str, str], images: int) -> str:
    """What the model reads of a call: the logs, then what it made (and how to link a file for the user)."""
    parts = [logs or "(the code printed nothing)"]
    if files:
        listed = ", ".join(f"{SANDBOX_PREFIX}{path}" for path in files)
        parts.append(f"Files written, which the user can download where your reply links them as written here: "
                     f"{listed}")
    if images:
        parts.append(f"{images} image{'s' if images > 1 else ''} shown to the user.")
    return "\n\n".join(parts)


def file_paths(text: str, files: dict[str, str]) -> list[dict[str, Any]]:
    """The `file_path` annotations of a reply: one per `sandbox:/mnt/data/...` link to a file the run's code
    wrote (`files`: /mnt/data path -> file id)."""
    found: list[dict[str, Any]] = []
    for path, file_id in files.items():
        link = SANDBOX_PREFIX + path
        start = text.find(link)
        while start != -1:
            end = start + len(link)
            if end == len(text) or not (text[end].isalnum() or text[end] in "._-/"):  # not a longer name
                found.append({"type": "file_path", "text": link, "start_index": start, "end_index": end,
                              "file_path": {"file_id": file_id}})
            start = text.find(link, end)
    return sorted(found, key=lambda a: a["start_index"])
