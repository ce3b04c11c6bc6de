"""A session's /mnt/data on the host: measured, compared, read and written without trusting what the code left
there.

The code controls the folder: a name in it may be a symlink to a host file (which a careless host would follow), a
fifo (which blocks a reader), a folder where a file was. Everything here goes through file descriptors with
O_NOFOLLOW (os.fwalk, openat), so the host only ever reads and writes regular files inside the folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

INSIDE = "/mnt/data"


@dataclass(frozen=True)
class Usage:
    """What a folder holds: its regular files (path relative to it -> size and mtime), their bytes, its entries."""

    files: dict[str, tuple[int, int]]
    others: frozenset[str]  # folders, symlinks, fifos...: the entries that are not regular files
    bytes: int
    entries: int  # files, folders, links and the rest; counting stops past the limit it was given
    unreadable: bool = False  # a folder could not be read, so its bytes are unknown

    def over(self, max_bytes: int, max_entries: int) -> str | None:
        """Which limit the folder is past: "disk_mb", "files", or None."""
        if self.bytes > max_bytes or self.unreadable:
            return "disk_mb"
        return "files" if self.entries > max_entries else None


def scan(folder: Path, max_entries: int) -> Usage:
    """Measure `folder` without following a symlink; counting stops once past `max_entries` entries. A folder that
    stays unreadable counts as past the disk limit: what cannot be measured cannot be allowed."""
    files: dict[str, tuple[int, int]] = {}
    others: set[str] = set()
    total = entries = 0
    unreadable: list[OSError] = []
    _let_us_in(None, str(folder))
    for top, dirs, names, dir_fd in os.fwalk(folder, follow_symlinks=False, onerror=unreadable.append):
        prefix = "" if top == str(folder) else os.path.relpath(top, folder) + "/"
        entries += len(dirs) + len(names)
        others.update(prefix + name for name in dirs)
        for name in dirs:  # before fwalk goes in (top-down): a folder the code locked is opened up again
            _let_us_in(dir_fd, name)
        for name in names:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                files[prefix + name] = (info.st_size, info.st_mtime_ns)
                total += info.st_size
            else:
                others.add(prefix + name)
        if entries > max_entries:
            break
    return Usage(files, frozenset(others), total, entries, bool(unreadable))


def _let_us_in(dir_fd: int | None, name: str) -> None:
    """Give the owner back rwx on a folder the code locked (chmod 000): root needs none, any other uid does.

    Through an O_PATH descriptor opened without following a symlink, so a folder swapped for a link to a host file
    changes nothing of the host's."""
    if os.getuid() == 0:
        return
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dir_fd)
    except OSError:
        return
    try:
        mode = os.fstat(fd).st_mode
        if mode & 0o700 != 0o700:
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode) | 0o700)  # chmod of the very folder opened
    except OSError:
        pass
    finally:
        os.close(fd)


def changed(before: Usage, after: Usage) -> list[str]:
    """The files of `after` that `before` did not have or had with another size or time, as /mnt/data paths."""
    return sorted(f"{INSIDE}/{path}" for path, mark in after.files.items() if before.files.get(path) != mark)


def relative(path: str) -> str:
    """`path` ("/mnt/data/out/a.csv" or "out/a.csv") relative to /mnt/data; ValueError for anything else."""
    if path.startswith(INSIDE + "/"):
        path = path[len(INSIDE) + 1:]
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise ValueError(f"not a file path inside {INSIDE}: {path!r}")
    return path


def read_file(folder: Path, path: str) -> bytes:
    """The bytes of the regular file `path` (see `relative`) in `folder`; OSError when it is not one (a symlink,
    a fifo, a folder, gone)."""
    parts = relative(path).split("/")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            raise OSError(f"{INSIDE}/{'/'.join(parts)} is not a regular file")
        return file.read()


def write_file(folder: Path, name: str, data: bytes) -> str:
    """Put `data` in `folder` as the file `name` (one path component), replacing whatever the code left under that
    name but a folder; the /mnt/data path."""
    if "/" in name or name in ("", ".", "..") or "\0" in name or len(name.encode()) > 255:
        raise ValueError(f"not a file name for {INSIDE}: {name!r}")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        temporary = f".upload-{secrets.token_hex(8)}"
        file_fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            with os.fdopen(file_fd, "wb") as file:
                file.write(data)
            os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a symlink itself, not its target
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=fd)
            raise
    finally:
        os.close(fd)
    return f"{INSIDE}/{name}"


def added(before: Usage, after: Usage) -> list[str]:
    """Every entry of `after` that is new or a changed file: what a call added, as /mnt/data paths."""
    new = set(changed(before, after))
    new.update(f"{INSIDE}/{path}" for path in after.others - before.others)
    return sorted(new)


def remove(folder: Path, paths: list[str]) -> None:
    """Delete these /mnt/data entries, folders with what they hold (never what a symlink on the way points to)."""
    for path in sorted(paths, key=lambda p: p.count("/")):  # a folder first: its contents go with it
        parts = relative(path).split("/")
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for part in parts[:-1]:
                    inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    os.close(fd)
                    fd = inner
                try:
                    os.unlink(parts[-1], dir_fd=fd)
                except IsADirectoryError:
                    shutil.rmtree(parts[-1], dir_fd=fd)
            finally:
                os.close(fd)


def remove_tree(folder: Path) -> None:
    """Delete a session's folder, also the parts the code made unreadable (chmod 000) for a host that is not root."""

    def retry(function: object, path: str, error: object) -> None:
        with contextlib.suppress(OSError):
            for target in (os.path.dirname(path), path):
                if not os.path.islink(target):
                    os.chmod(target, 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    if folder.exists():
        shutil.rmtree(folder, onerror=retry)
