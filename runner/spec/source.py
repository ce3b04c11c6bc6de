"""Reading a spec (or rules) file's text: regular files only, never more than the size limit, UTF-8."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from runner.spec.errors import SpecError, SpecInvalid
from runner.spec.limits import MAX_FILE_BYTES

_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def _refuse(display: str, message: str, line: int = 1, column: int = 1) -> SpecInvalid:
    return SpecInvalid([SpecError(display, line, column, "", message)])


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_text(path: str | Path, display: str) -> str:
    """The UTF-8 text of the regular file `path` (named `display` in errors); raise SpecInvalid when it is
    missing, not a regular file, larger than MAX_FILE_BYTES, unreadable or not UTF-8."""
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer; fstat then refuses it
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _refuse(display, "file not found") from None
    except IsADirectoryError:  # where a folder cannot be opened at all (Windows)
        raise _refuse(display, "not a regular file (a folder)") from None
    except ValueError:  # a NUL in the name
        raise _refuse(display, "the file name holds a NUL character") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise _refuse(display, "the file name is too long for the file system") from None
        raise _refuse(display, f"cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(display, f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > MAX_FILE_BYTES:
            raise _refuse(display, _too_big(info.st_size))
        # files such as /proc's say size 0: read one byte more than allowed to know
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _refuse(display, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise _refuse(display, _too_big(None))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_col(data, exc.start)
        raise _refuse(display, f"not UTF-8 text ({exc.reason} at byte {exc.start})", line, column) from None


def _too_big(size: int | None) -> str:
    got = f"{size:,} bytes" if size is not None else "more than that"
    return f"the file is larger than {MAX_FILE_BYTES:,} bytes, the limit of a spec file ({got})"


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except BlockingIOError:  # a regular file never blocks; a file that claims to be one and does is done
            break
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte `offset`, counting the valid UTF-8 before it."""
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column
