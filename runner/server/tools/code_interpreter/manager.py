"""The backend's code interpreter sessions: one per key (a thread id), kept between calls until idle for too long.

Every blocking step (starting a sandbox, a call, stopping) runs on the manager's own worker threads, off the event
loop, at most one per session at a time: one call at a time per session, sessions side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from runner.server.tools.code_interpreter import files
from runner.server.tools.code_interpreter.limits import CodeLimits
from runner.server.tools.code_interpreter.sandbox import Sandbox, SandboxConfig, SandboxError, block_signals, prepare
from runner.server.tools.code_interpreter.session import CodeResult, CodeSession

T = TypeVar("T")
IDLE_SECONDS = 3600.0  # the hosted API kept a session for an hour
MAX_SESSIONS = 32  # running at once; past this the least recently used idle one is stopped
EXPIRED_REMEMBERED = 10_000  # keys whose session expired, so their next session says it is a new one


class SessionManager:
    """Code sessions by key. Use `async with SessionManager() as manager`, or call `aclose()` at shutdown."""

    def __init__(self, *, limits: CodeLimits | None = None, config: SandboxConfig | None = None,
                 idle_seconds: float = IDLE_SECONDS, max_sessions: int = MAX_SESSIONS,
                 root: Path | None = None) -> None:
        """Sessions with these `limits` and sandbox `config`, each stopped after `idle_seconds` without a call,
        their folders under `root` (default: a new temporary folder, removed at close)."""
        if idle_seconds <= 0 or max_sessions < 1:
            raise ValueError("idle_seconds must be positive and max_sessions at least 1")
        self.limits = limits or CodeLimits()
        self.config = config or SandboxConfig()
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="runner-code-")) if root is None else root
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sessions: dict[str, CodeSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=max_sessions + 2, thread_name_prefix="code-session",
                                        initializer=block_signals)
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> SessionManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def check(self) -> Sandbox:
        """The sandbox sessions will use, started once to see that it works; SandboxUnavailable saying what to
        install or change when it does not (for `runner serve --code-interpreter` to refuse at start)."""
        return await self._blocking(prepare, self.config)

    async def run(self, key: str, code: str) -> CodeResult:
        """Execute `code` in `key`'s session (made or restarted as needed). A limit or an exception in the code is a
        result; SandboxError (SandboxUnavailable) only when no sandbox can be started."""
        async with self._lock(key):
            session = await self._session(key)
            call = asyncio.get_running_loop().run_in_executor(self._pool, session.run, code)
            try:
                result = await asyncio.shield(call)
            except asyncio.CancelledError:
                # the run was cancelled: the code must not go on, nor the next call start beside it
                await self._blocking(session.stop, "its last call was cancelled")
                with contextlib.suppress(Exception):
                    await call
                raise
        self._sweep_soon()
        if key in self._expired and not result.restarted:
            self._expired.pop(key, None)
            note = ("[This is a new Python session: the previous one was stopped after "
                    f"{self.idle_seconds:g} s without a call, with its variables and files.]")
            return _with_note(result, note)
        return result

    async def write_files(self, key: str, named: Mapping[str, bytes]) -> list[str]:
        """Put files in `key`'s /mnt/data under their names (one path component each); their /mnt/data paths."""
        async with self._lock(key):
            session = await self._session(key)
            return [await self._blocking(session.write_file, name, data) for name, data in named.items()]

    async def read_file(self, key: str, path: str) -> bytes:
        """A file of `key`'s /mnt/data (a path from CodeResult.files); OSError when it is not a regular file there,
        KeyError when the key has no session."""
        session = self._sessions[key]
        return await self._blocking(session.read_file, path)

    def pids(self, key: str) -> set[int]:
        """The host pids of `key`'s sandbox (empty when it has none running)."""
        session = self._sessions.get(key)
        return session.pids() if session is not None else set()

    def session_folder(self, key: str) -> str | None:
        """Which session `key` has (its folder), or None: a new session, with an empty /mnt/data, has another."""
        session = self._sessions.get(key)
        return str(session.folder) if session is not None else None

    def session_keys(self) -> list[str]:
        """The keys that have a session."""
        return list(self._sessions)

    async def close(self, key: str) -> None:
        """End `key`'s session and delete its files (its thread was deleted)."""
        async with self._lock(key):
            session = self._sessions.pop(key, None)
            if session is not None:
                await self._blocking(session.close)
        self._locks.pop(key, None)

    async def expire_idle(self) -> list[str]:
        """End the sessions unused for `idle_seconds` (the sweeper calls this); the keys ended."""
        now = time.monotonic()
        idle = [key for key, session in self._sessions.items()
                if not session.running and now - session.last_used >= self.idle_seconds]
        ended = []
        for key in idle:
            lock = self._lock(key)
            if lock.locked():
                continue  # a call is starting: not idle after all
            async with lock:
                session = self._sessions.get(key)
                if session is None or session.running or time.monotonic() - session.last_used < self.idle_seconds:
                    continue
                del self._sessions[key]
                await self._blocking(session.close)
            self._remember_expired(key)
            ended.append(key)
        return ended

    async def aclose(self) -> None:
        """End every session and the worker threads; remove the root folder if the manager made it."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(self._blocking(session.close) for session in sessions), return_exceptions=True)
        self._pool.shutdown(wait=True)
        if self._own_root:
            files.remove_tree(self.root)

    def _lock(self, key: str) -> asyncio.Lock:
        """The lock that makes `key`'s calls one at a time."""
        return self._locks.setdefault(key, asyncio.Lock())

    async def _session(self, key: str) -> CodeSession:
        """`key`'s session, made if it has none (stopping the least recently used idle one past max_sessions)."""
        if self._closed:
            raise SandboxError("the code interpreter is shut down")
        session = self._sessions.get(key)
        if session is None:
            running = [s for s in self._sessions.values() if s.alive]
            if len(running) >= self.max_sessions:
                idle = [s for s in running if not s.running]
                if not idle:
                    raise SandboxError(f"too many code sessions at once (at most {self.max_sessions})")
                oldest = min(idle, key=lambda s: s.last_used)  # restarted, saying so, at its next call
                reason = f"it was stopped to make room: at most {self.max_sessions} run at once"
                await self._blocking(oldest.stop, reason)
            folder = self.root / f"session-{secrets.token_hex(8)}"
            session = self._sessions[key] = CodeSession(folder, self.limits, self.config)
        return session

    def _remember_expired(self, key: str) -> None:
        """Note that `key`'s session expired (the oldest such notes are forgotten first)."""
        self._expired[key] = None
        while len(self._expired) > EXPIRED_REMEMBERED:
            self._expired.popitem(last=False)

    def _sweep_soon(self) -> None:
        """Start the task that ends idle sessions, once there is a loop to run it."""
        if self._sweeper is None and not self._closed:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """End idle sessions, checking a few times per idle period (at most once a minute)."""
        interval = min(60.0, self.idle_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            await self.expire_idle()

    async def _blocking(self, function: Any, *args: Any) -> Any:
        """Run a blocking function on the manager's worker threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)


def _with_note(result: CodeResult, note: str) -> CodeResult:
    """`result` with `note` first in its logs."""
    from dataclasses import replace

    return replace(result, logs=f"{note}\n{result.logs}" if result.logs else note)
