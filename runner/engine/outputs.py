"""The files a conversation's code produced, fetched from the backend's Files API for the transcript: each at most
MAX_OUTPUT_FILE_BYTES and all of a conversation at most MAX_OUTPUT_BYTES (a file past them is listed with the
reason and not saved), each named uniquely within the conversation for the writer to save."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runner.report.files import MAX_OUTPUT_BYTES, MAX_OUTPUT_FILE_BYTES, safe_name, unique_name
from runner.report.transcript import OutputFile

MIB = 1024 * 1024


class TooLarge(Exception):
    """A file's contents went past what the transcript saves."""


class OutputFetcher:
    """Fetches the produced files of one conversation, within its budget, naming them uniquely."""

    def __init__(self, client: Any, describe: Callable[[BaseException], str],
                 budget: int = MAX_OUTPUT_BYTES, file_cap: int = MAX_OUTPUT_FILE_BYTES) -> None:
        self.files = client.files
        self.describe = describe  # a backend error in one line, without credentials
        self.left = budget
        self.budget = budget
        self.file_cap = file_cap
        self.taken: set[str] = set()  # the saved names so far (case-folded)
        self.fetched: list[str] = []  # the ids of every file asked about: a remote endpoint's, to delete after

    async def fetch(self, produced: Sequence[tuple[str, str, str | None]]) -> list[OutputFile]:
        """Each `(file_id, kind, name hint)` as an OutputFile, with its contents unless it could not be saved
        (the record says why). One at a time, so the budget is spent in the order the run produced them."""
        return [await self._one(file_id, kind, hint) for file_id, kind, hint in produced]

    def keep(self, file_id: str, name: str, kind: str, data: bytes) -> OutputFile:
        """A file the backend gave inline (a Responses code call's image) as an OutputFile, saved within the
        same budget as those fetched."""
        output = OutputFile(file_id, name, kind, size=len(data))
        if len(data) > min(self.file_cap, self.left):
            output.skipped = self._too_large(len(data))
            return output
        output.data = data
        output.saved_as = unique_name(safe_name(name, file_id), self.taken)
        self.left -= len(data)
        return output

    async def _one(self, file_id: str, kind: str, hint: str | None) -> OutputFile:
        self.fetched.append(file_id)
        try:
            info = await self.files.retrieve(file_id)
        except Exception as exc:
            return OutputFile(file_id, hint or file_id, kind, skipped=f"not saved: retrieving it failed: "
                                                                   f"{self.describe(exc)}")
        name = _base(getattr(info, "filename", None)) or hint or file_id
        size = getattr(info, "bytes", None)
        output = OutputFile(file_id, name, kind, size=size if isinstance(size, int) else None)
        cap = min(self.file_cap, self.left)
        if output.size is not None and output.size > cap:
            output.skipped = self._too_large(output.size)
            return output
        try:
            data = await self._download(file_id, cap)
        except TooLarge:
            output.skipped = self._too_large(None)
            return output
        except Exception as exc:
            output.skipped = f"not saved: downloading it failed: {self.describe(exc)}"
            return output
        output.size = len(data)
        output.data = data
        output.saved_as = unique_name(safe_name(name, file_id), self.taken)
        self.left -= len(data)
        return output

    async def _download(self, file_id: str, cap: int) -> bytes:
        """The file's contents, read as they stream in and given up past `cap` bytes (whatever its size said)."""
        chunks: list[bytes] = []
        size = 0
        async with self.files.with_streaming_response.content(file_id) as response:
            async for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise TooLarge(file_id)
                chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, size: int | None) -> str:
        held = f"holds {size:,} bytes, more than" if size is not None else "holds more than"
        if self.left < self.file_cap:
            return (f"not saved: it {held} the {self.left:,} bytes left of the {_size(self.budget)} a transcript "
                    "saves of a conversation's files")
        return f"not saved: it {held} the {_size(self.file_cap)} a transcript saves of one file"


def _size(count: int) -> str:
    return f"{count // MIB} MiB" if count % MIB == 0 else f"{count:,} bytes"


def _base(name: Any) -> str | None:
    """The last part of a name the backend gives (which should be a base name already), or None."""
    if not isinstance(name, str):
        return None
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    return last or None
