"""The bytes of uploaded files, content-addressed on disk beside the SQLite database.

A file's bytes live once, under their SHA-256, however many files hold them; SQLite keeps the metadata
and which blob each file is. `runner serve --db backend.sqlite3` keeps them in `backend.sqlite3.files/`,
so they survive restarts with the database; the embedded backend (an in-memory database) keeps them in a
temporary folder removed when the backend closes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1024 * 1024


class BlobStore:
    """Content-addressed bytes in one folder (`None`: a temporary folder, removed by `close`)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.temporary = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="runner-files-")) if folder is None else Path(folder)

    def put(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store the bytes (written whole to a temporary file, then renamed); return their SHA-256 and size."""
        digest = hashlib.sha256()
        size = 0
        self.folder.mkdir(parents=True, exist_ok=True)  # made with the first file, not with every database
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            os.replace(tmp, self.path(sha))  # the same bytes already there: the same name, the same content
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return sha, size

    def put_file(self, source: BinaryIO) -> tuple[str, int]:
        """Store what a file object holds, from where it is to its end."""
        return self.put(iter(lambda: source.read(_CHUNK), b""))

    def path(self, sha: str) -> Path:
        """Where the blob with this SHA-256 lives."""
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"not a SHA-256: {sha!r}")
        return self.folder / sha

    def read(self, sha: str) -> bytes:
        """The blob's bytes."""
        return self.path(sha).read_bytes()

    def chunks(self, sha: str) -> Iterable[bytes]:
        """The blob's bytes, a megabyte at a time."""
        with self.path(sha).open("rb") as source:
            yield from iter(lambda: source.read(_CHUNK), b"")

    def discard(self, sha: str) -> None:
        """Remove a blob no file holds any more."""
        with contextlib.suppress(FileNotFoundError):
            self.path(sha).unlink()

    def close(self) -> None:
        """Remove the folder if it is a temporary one."""
        if self.temporary:
            shutil.rmtree(self.folder, ignore_errors=True)


def folder_beside(db_path: str) -> Path | None:
    """Where the blobs of a database live: `<db>.files/` beside a database file, None (temporary) in memory."""
    if db_path == ":memory:" or db_path.startswith("file::memory:"):
        return None
    return Path(db_path + ".files")
