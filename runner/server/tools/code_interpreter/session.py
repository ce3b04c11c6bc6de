"""One code interpreter session: a sandboxed Python kept between calls, and the host's side of its protocol.

The host enforces what the code cannot get around: the wall clock (an interrupt, then the session killed), the
size and entries of /mnt/data (measured during and after each call), and it reads the logs from the sandbox's
fd 1 and 2 itself, so they are bounded whatever the code prints and kept when the session dies. A session that
died is started again at the next call, which says its state was lost; /mnt/data outlives it.

CodeSession is synchronous and blocking: SessionManager runs it off the event loop.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.server.tools.code_interpreter import files
from runner.server.tools.code_interpreter.limits import LIMIT_NAMES, CodeLimits, describe, phrase
from runner.server.tools.code_interpreter.sandbox import (
    SandboxConfig,
    SandboxError,
    SandboxProcess,
    prepare,
)

START_SECONDS = 30.0  # for the sandbox and the kernel to say they are ready
CHECK_SECONDS = 0.25  # how often /mnt/data is measured during a call
MARKER_SECONDS = 2.0  # after the answer, how long the end of the call's logs may take to arrive
CLOSE_SECONDS = 2.0  # for a session told to end to do so before it is killed
MAX_ANSWER_BYTES = 64 << 20  # an answer line (figures included) past this is not the kernel's: the session is killed
PNG = b"\x89PNG\r\n\x1a\n"
EXIT_CPU = 128 + signal.SIGXCPU  # kernel.EXIT_CPU: leftover threads used the CPU time between calls


@dataclass(frozen=True)
class CodeResult:
    """What one call produced: what the model reads (`logs`), and the parts a run step and a reply are made of."""

    logs: str  # the output, the last expression's value, the traceback, then notes: the limit, a restart
    error: str | None  # "ZeroDivisionError: division by zero", or why the session ended; None when all went well
    limit: str | None  # the limit that stopped the call (limits.LIMIT_NAMES), or None
    images: tuple[bytes, ...]  # PNG files of the matplotlib figures shown or left open
    files: tuple[str, ...]  # the /mnt/data paths of the files the call created or changed
    value: str | None  # repr of the last statement's value, when it is an expression that is not None
    truncated: bool  # the logs were cut to CodeLimits.output_chars (their middle)
    restarted: bool  # the call ran in a new session: the previous one had ended, its variables are gone
    ended: bool  # the session ended during the call; the next call starts a new one
    seconds: float  # wall time of the call, a (re)start included


class _Logs:
    """A call's logs from the log pipe: the start kept whole and a rolling end, up to its marker."""

    def __init__(self, budget: int, marker: bytes) -> None:
        """Keep `budget` bytes at each end; stop at `marker`."""
        self.budget, self.marker = budget, marker
        self.head, self.tail = bytearray(), bytearray()
        self.cut = 0
        self.pending = b""
        self.done = False

    def add(self, data: bytes) -> None:
        """Take what was read from the pipe; what follows the marker is not the call's and is dropped."""
        if self.done:
            return
        data = self.pending + data
        end = data.find(self.marker)
        if end >= 0:
            data, self.done = data[:end], True
            self.pending = b""
        else:  # the marker may be arriving in pieces: hold back what could be its start
            keep = max(0, len(data) - len(self.marker) + 1)
            data, self.pending = data[:keep], data[keep:]
        room = self.budget - len(self.head)
        self.head += data[:room]
        self.tail += data[room:] if room > 0 else data
        if len(self.tail) > self.budget:
            self.cut += len(self.tail) - self.budget
            del self.tail[:len(self.tail) - self.budget]

    def text(self) -> str:
        """The logs as text, with the bytes dropped from the middle said."""
        tail = self.tail + (self.pending if not self.done else b"")
        middle = f"\n[... {self.cut} bytes of output cut ...]\n" if self.cut else ""
        return self.head.decode("utf-8", "replace") + middle + bytes(tail).decode("utf-8", "replace")


class CodeSession:
    """A stateful, sandboxed Python for one key (a thread): started at the first call, restarted after it dies."""

    def __init__(self, folder: Path, limits: CodeLimits | None = None, config: SandboxConfig | None = None) -> None:
        """A session working in `folder` (created; `folder/data` is its /mnt/data). Nothing starts yet."""
        self.folder = folder
        self.limits = limits or CodeLimits()
        self.config = config or SandboxConfig()
        self.data_dir = folder / "data"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # the code may leave setuid files: keep others out
        self.data_dir.mkdir(exist_ok=True)
        self.last_used = time.monotonic()
        self.running = False
        self._process: SandboxProcess | None = None
        self._lost: str | None = None  # why the previous session ended, said by the next call
        self._calls = 0
        self._closed = False

    @property
    def alive(self) -> bool:
        """Whether the session's Python is running (it starts at the first call)."""
        return self._process is not None and self._process.alive

    def pids(self) -> set[int]:
        """The host pids of the sandbox's processes (empty when it is not running)."""
        return self._process.pids() if self._process is not None else set()

    def start(self) -> None:
        """Start the sandbox if it is not running (SandboxUnavailable when no sandbox can run here)."""
        if self._closed:
            raise SandboxError("the code session is closed")
        if self.alive:
            return
        if self._process is not None:  # it ended between calls
            status = self._process.kill()
            self._lost = self._lost or ("its leftover threads used up the CPU time" if status == EXIT_CPU
                                        else _ending(status))
        process = prepare(self.config).spawn(self.folder, self.limits)
        self._process = process
        os.set_blocking(process.answers, False)
        os.set_blocking(process.logs, False)
        buffer, startup = bytearray(), bytearray()
        deadline = time.monotonic() + START_SECONDS
        ended = False
        while b"\n" not in buffer and not ended and time.monotonic() < deadline:
            ready = select.select([process.answers, process.logs], [], [], 0.1)[0]
            if process.logs in ready:
                startup += (_read(process.logs) or b"")[:4096]
            if process.answers in ready:
                chunk = _read(process.answers)
                ended = chunk == b""
                buffer += chunk or b""
        if b"\n" not in buffer:
            with contextlib.suppress(OSError):
                startup += (_read(process.logs) or b"")[:4096]
            process.kill()
            self._process = None
            message = startup.decode("utf-8", "replace").strip() or "no answer"
            raise SandboxError(f"the code session did not start: {message[-2000:]}")

    def run(self, code: str) -> CodeResult:
        """Execute `code` in the session (starting it if needed) within the limits; never raises for what the code
        does, only SandboxError (SandboxUnavailable) when the sandbox itself cannot start. One call at a time."""
        started = time.monotonic()
        self.running = True
        try:
            notes: list[str] = []
            restarted = False
            if not self.alive:
                self.start()
                if self._lost is not None:
                    restarted = True
                    notes.append(f"[The Python session was restarted ({self._lost}): the variables, imports and "
                                 "functions of earlier calls are gone; the files in /mnt/data are kept.]")
                    self._lost = None
            return self._call(code, started, notes, restarted)
        finally:
            self.running = False
            self.last_used = time.monotonic()

    def _call(self, code: str, started: float, notes: list[str], restarted: bool) -> CodeResult:
        """One call to the running kernel, watched: its answer or its end, made into a CodeResult."""
        process = self._process
        assert process is not None
        limits = self.limits
        disk_bytes = limits.disk_mb << 20
        before = files.scan(self.data_dir, limits.files)
        _drain(process.logs)  # what leftover threads printed since the last call is not this call's
        self._calls += 1
        call_id = self._calls
        marker = f"\0end of call {call_id} {secrets.token_hex(8)}\0"
        logs = _Logs(2 * limits.output_chars, marker.encode())
        oom_kills, refusals = process.oom_kills(), process.pid_refusals()
        request = {"op": "run", "id": call_id, "code": code, "cpu_seconds": math.ceil(limits.cpu_seconds),
                   "marker": marker}
        answer: dict[str, Any] | None = None
        stop: str | None = None  # the host's own reason to stop the call
        kill_at: float | None = None
        died = not _send(process, request)
        buffer = bytearray()
        deadline = time.monotonic() + limits.wall_seconds  # the call's own time: a (re)start is not the code's
        next_check = time.monotonic() + CHECK_SECONDS
        while not died and answer is None:
            ready = select.select([process.answers, process.logs], [], [], 0.1)[0]
            if process.logs in ready:
                logs.add(_read(process.logs) or b"")
            if process.answers in ready:
                chunk = _read(process.answers)
                died = chunk == b""
                buffer += chunk or b""
                answer, buffer = _answer_in(buffer, call_id)
                if answer is None and len(buffer) > MAX_ANSWER_BYTES:
                    died, stop = True, stop or "answer"
            now = time.monotonic()
            if stop is None and now >= next_check:
                next_check = now + CHECK_SECONDS
                stop = self._over(disk_bytes)
            if stop is None and now >= deadline:
                stop = "wall_seconds"
            if stop is not None and kill_at is None:
                kill_at = now + limits.interrupt_grace_seconds
                died = not _send(process, {"op": "interrupt", "id": call_id})
            if kill_at is not None and now >= kill_at and answer is None:
                died = True
        until = time.monotonic() + (MARKER_SECONDS if answer is not None else 0.0)
        while not logs.done:  # the rest of the call's logs, up to its marker (or what a dead session left)
            chunk = _read(process.logs)
            if chunk:
                logs.add(chunk)
            elif chunk == b"" or time.monotonic() >= until:
                break
            else:
                select.select([process.logs], [], [], 0.05)
        oom = process.oom_kills() > oom_kills  # read before a kill takes the cgroups away
        refused = process.pid_refusals() > refusals
        status = process.kill() if answer is None else 0
        return self._result(answer, logs, stop, status, started, notes, restarted, before, oom=oom, refused=refused)

    def _over(self, disk_bytes: int) -> str | None:
        """The folder limit the session is past during a call (its host folders measured), or None."""
        usage = files.scan(self.data_dir, self.limits.files)
        over = usage.over(disk_bytes, self.limits.files)
        for name in ("tmp", "shm"):  # host folders only where bwrap cannot size a tmpfs
            if over is None and (self.folder / name).is_dir():
                over = files.scan(self.folder / name, self.limits.files).over(disk_bytes, self.limits.files)
        return over

    def _result(self, answer: dict[str, Any] | None, logs: _Logs, stop: str | None, status: int, started: float,
                notes: list[str], restarted: bool, before: files.Usage, *, oom: bool, refused: bool) -> CodeResult:
        """Make the call's result from the kernel's answer (None: the session ended) and what the host saw."""
        limits = self.limits
        text = logs.text()
        value: str | None = None
        error: str | None = None
        limit: str | None = None
        images: list[bytes] = []
        after_notes: list[str] = []
        if answer is not None:
            value = _text(answer.get("result"))
            problem = answer.get("error") if isinstance(answer.get("error"), dict) else None
            if value is not None:
                text = _joined(text, value)
            if problem is not None:
                error = f"{_text(problem.get('type')) or 'Error'}: {_text(problem.get('message')) or ''}".rstrip(": ")
                text = _joined(text, _text(problem.get("traceback")) or error)
                kernel_limit = answer.get("limit")
                limit = stop if stop is not None else kernel_limit if isinstance(kernel_limit, str) else None
                if limit is None and refused:
                    limit = "processes"
            if refused and limit != "processes":
                after_notes.append(f"[Some processes or threads could not start: {phrase('processes', limits)} "
                                   "was reached during this call.]")
            if oom:
                limit = "memory_mb"  # a process of the call was killed for the memory cgroup's limit
                after_notes.append("[A process of this call was killed: the session ran out of memory.]")
            images = _images(answer.get("images"))
            dropped = answer.get("images_dropped")
            if isinstance(dropped, int) and dropped > 0:
                after_notes.append(f"[{dropped} more figures were closed without being shown: at most "
                                   f"{len(images)} per call.]")
        else:
            if stop == "answer":
                ending = f"its answer was larger than {MAX_ANSWER_BYTES >> 20} MiB"
            else:
                ending = "its leftover threads used up the CPU time" if status == EXIT_CPU else _ending(status)
            if stop in LIMIT_NAMES:
                limit = stop  # the host killed it for that limit
            elif oom:
                limit = "memory_mb"
            elif status == EXIT_CPU:
                limit = "cpu_seconds"
            error = f"SessionEnded: the Python session ended ({ending})"
            self._lost = ending
        after = files.scan(self.data_dir, limits.files)
        over = after.over(limits.disk_mb << 20, limits.files)
        if over is not None:  # what the call added put the folder over: it goes, all of it (counted uncapped)
            removed = files.added(before, files.scan(self.data_dir, sys.maxsize))
            files.remove(self.data_dir, removed)
            after = files.scan(self.data_dir, limits.files)
            limit = over
            error = error or f"DiskLimit: /mnt/data went past {phrase(over, limits)}"
            if removed:
                shown = ", ".join(removed[:10]) + (f" and {len(removed) - 10} more" if len(removed) > 10 else "")
                after_notes.append(f"[What this call wrote to /mnt/data was removed: {shown}.]")
        for name in ("tmp", "shm"):
            folder = self.folder / name
            if folder.is_dir() and files.scan(folder, limits.files).over(limits.disk_mb << 20, limits.files):
                files.remove_tree(folder)
                folder.mkdir()
                limit = limit or "disk_mb"
                after_notes.append(f"[/{'dev/shm' if name == 'shm' else 'tmp'} went past the disk limit: emptied.]")
        text, truncated = _cut(text, limits.output_chars)
        if limit is not None:
            after_notes.insert(0, describe(limit, limits))
        if answer is None:
            after_notes.append(f"[The Python session ended ({self._lost}); the next call starts a new one, without "
                               "this session's variables, imports and functions; the files in /mnt/data are kept.]")
        logs_text = "\n".join(part for part in [*notes, text.rstrip("\n"), *after_notes] if part)
        return CodeResult(logs=logs_text, error=error, limit=limit, images=tuple(images),
                          files=tuple(files.changed(before, after)), value=value, truncated=truncated,
                          restarted=restarted, ended=answer is None, seconds=time.monotonic() - started)

    def write_file(self, name: str, data: bytes) -> str:
        """Put a file in /mnt/data under `name` (one path component); its /mnt/data path."""
        return files.write_file(self.data_dir, name, data)

    def read_file(self, path: str) -> bytes:
        """The bytes of a regular file in /mnt/data (a path from CodeResult.files); OSError for anything else."""
        return files.read_file(self.data_dir, path)

    def stop(self, reason: str = "it was stopped") -> None:
        """End the session's processes; the next call starts them again, saying `reason`. /mnt/data is kept."""
        process, self._process = self._process, None
        if process is None:
            return
        self._lost = self._lost or reason
        if process.alive:
            with contextlib.suppress(OSError, ValueError):
                process.requests.close()  # the kernel reads the end of its input: it kills its processes and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=CLOSE_SECONDS)
        process.kill()

    def close(self) -> None:
        """End the session for good: its processes, cgroups and folder."""
        self._closed = True
        self.stop()
        files.remove_tree(self.folder)


def _send(process: SandboxProcess, message: dict[str, Any]) -> bool:
    """Write one request line to the kernel; False when it is gone."""
    try:
        process.requests.write((json.dumps(message) + "\n").encode())
        process.requests.flush()
    except (OSError, ValueError):
        return False
    return True


def _read(fd: int) -> bytes | None:
    """What a non-blocking pipe holds now: b"" at its end, None when nothing has come yet."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _drain(fd: int) -> None:
    """Drop what a non-blocking pipe holds now."""
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(fd, 1 << 16):
            pass


def _answer_in(buffer: bytearray, call_id: int) -> tuple[dict[str, Any] | None, bytearray]:
    """The answer to `call_id` among the complete lines of `buffer`, and what is left (lines about other calls, or
    not answers at all, are dropped)."""
    while b"\n" in buffer:
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer = bytearray(rest)
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("id") == call_id:
            return message, buffer
    return None, buffer


def _images(encoded: object) -> list[bytes]:
    """The PNG images of an answer (anything else the code put there is dropped)."""
    images = []
    for item in encoded if isinstance(encoded, list) else []:
        with contextlib.suppress(TypeError, ValueError, binascii.Error):
            data = base64.b64decode(item, validate=True)
            if data.startswith(PNG):
                images.append(data)
    return images


def _text(value: object) -> str | None:
    """A string of an answer as valid text (a lone surrogate in the code's repr becomes U+FFFD)."""
    if not isinstance(value, str):
        return None
    return value.encode("utf-8", "replace").decode("utf-8")


def _joined(text: str, more: str) -> str:
    """`more` on a line of its own after `text`."""
    return f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{more}"


def _cut(text: str, limit: int) -> tuple[str, bool]:
    """`text` with its middle cut to `limit` characters, saying how much; and whether it was cut."""
    if len(text) <= limit:
        return text, False
    half = limit // 2
    return (f"{text[:half]}\n[... {len(text) - 2 * half} characters of logs cut: a call returns at most {limit} ...]\n"
            f"{text[-half:]}", True)


def _ending(status: int) -> str:
    """How the session's Python ended, from bwrap's exit status (128 + n: killed by signal n)."""
    number = -status if status < 0 else status - 128 if status > 128 else 0
    if number:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"its Python was killed by {name}"
    return f"its Python exited with status {status}"
