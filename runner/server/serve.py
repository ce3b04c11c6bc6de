"""`runner serve`: the built-in backend over real HTTP (uvicorn), for any Assistants client."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DB = "runner-backend.sqlite3"


class ServeError(Exception):
    """The server cannot start as configured."""


@dataclass
class ServeOptions:
    """How `runner serve` runs."""

    host: str = "127.0.0.1"
    port: int = 8000
    db: str = DEFAULT_DB
    provider: str | None = None
    rules: Sequence[dict[str, Any]] | None = None
    api_key_env: str | None = None
    log_level: str = "info"
    embeddings: str | None = None  # file_search's embedder: an OpenAI-compatible URL or `local` (overrides the env)
    embeddings_model: str | None = None
    embeddings_key_env: str | None = None  # the variable holding the embedding endpoint's key
    secret_env: tuple[str, ...] = ()  # variables whose values are secrets too (what an env file loaded)
    code_interpreter: bool = False  # execute code_interpreter calls, in a sandbox (never without one)
    code_timeout: float | None = None  # wall seconds per call (None: the default, CodeLimits.wall_seconds)
    code_memory: int | None = None  # MB of memory a session may use (None: the default, CodeLimits.memory_mb)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key(options: ServeOptions) -> str | None:
    """The key clients must present, from the variable `--api-key-env` names; required off loopback."""
    key = None
    if options.api_key_env:
        key = options.environ.get(options.api_key_env) or None
        if key is None:
            raise ServeError(f"the environment variable {options.api_key_env} (--api-key-env) is not set or empty")
    if key is None and not is_loopback(options.host):
        raise ServeError(f"binding to {options.host} exposes the backend beyond this machine: "
                         "require a key with --api-key-env NAME")
    return key


def lock_database(db: str) -> int | None:
    """Hold an exclusive lock on `<db>.lock` (its descriptor; close it to release), so that a second server
    on the same database refuses to start instead of failing the first one's live runs as stranded."""
    if db == ":memory:":
        return None
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        return None
    folder = os.path.dirname(os.path.abspath(db))
    if not os.path.isdir(folder):
        raise ServeError(f"cannot open --db {db}: the folder {folder} does not exist")
    path = f"{db}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ServeError(f"cannot open --db {db}: {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ServeError(f"another runner serve is using the database {db}: stop it, or give this one "
                         "another --db") from None
    return fd


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (a busy port is a ServeError, not a traceback)."""
    address = host.strip("[]")
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only for sockets that
    # say they are TCP, and without it every keep-alive response waits ~40 ms on Nagle and delayed ACKs
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
        sock.bind((address, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} is in use on {host}: stop what listens there, or choose another "
                             "--port") from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def code_limits(options: ServeOptions) -> Any:
    """The code interpreter's limits with `--code-interpreter` (its sandbox started once, to refuse now rather
    than at the first run when none can start), else None; ServeError saying what to install or fix."""
    if not options.code_interpreter:
        if options.code_timeout is not None or options.code_memory is not None:
            raise ServeError("--code-timeout and --code-memory limit the code interpreter: add --code-interpreter")
        return None
    from runner.server.tools.code_interpreter import CodeLimits, SandboxUnavailable, prepare

    given = {name: value for name, value in (("wall_seconds", options.code_timeout),
                                              ("memory_mb", options.code_memory)) if value is not None}
    try:
        limits = CodeLimits(**given)
    except ValueError as exc:
        flag = {"wall_seconds": "--code-timeout", "memory_mb": "--code-memory"}
        text = str(exc)
        for name, option in flag.items():
            text = text.replace(f"CodeLimits.{name}", option)
        raise ServeError(text) from None
    try:
        prepare()
    except SandboxUnavailable as exc:
        raise ServeError(f"--code-interpreter: {exc}") from None
    return limits


def serve(options: ServeOptions, announce: Callable[[str], None] = print) -> None:
    """Run the server until SIGINT/SIGTERM; `announce` receives one line per lifecycle event.

    The database is locked and the port bound before the backend opens the database and fails the runs
    a stopped server left executing: a server that cannot start changes nothing.
    """
    import uvicorn

    from runner.redact import redact_logs
    from runner.server.app import Backend, BackendSettings, create_app
    from runner.server.providers import LiveSettings
    from runner.server.tools.file_search.embeddings import EmbeddingConfigError, embedding_settings

    key = api_key(options)
    live = LiveSettings.from_env(options.environ)
    try:
        embeddings = embedding_settings(options.environ, base_url=options.embeddings, model=options.embeddings_model,
                                        key_env=options.embeddings_key_env)
    except EmbeddingConfigError as exc:
        raise ServeError(str(exc)) from None
    # kept out of what the backend stores from upstream replies, and out of its log
    others = {name: options.environ[name] for name in options.secret_env if options.environ.get(name)}
    if key and options.api_key_env:
        others[options.api_key_env] = key
    live = live.with_secrets(others)
    code = code_limits(options)
    lock = lock_database(options.db)
    try:
        sock = listen(options.host, options.port)
        try:
            try:
                backend = Backend(BackendSettings(db_path=options.db, rules=options.rules,
                                                  provider=options.provider, api_key=key, live=live,
                                                  embeddings=embeddings, code_interpreter=code))
            except sqlite3.Error as exc:
                raise ServeError(f"cannot open --db {options.db}: {exc}") from None
            if backend.recovered:
                announce(f"marked {backend.recovered} run(s) failed: they were executing when the server "
                         "last stopped")
            config = uvicorn.Config(create_app(backend), host=options.host, port=options.port,
                                    log_level=options.log_level, lifespan="on", timeout_graceful_shutdown=10)
            # after uvicorn's Config, which sets up its loggers: no log line shows a key
            redact_logs(backend.providers.redact, ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"))
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            auth = "Bearer key required" if key else "no key required"
            models = ", ".join(sorted(backend.providers.providers))
            search = f"embeddings {embeddings.describe()}" if embeddings else "keyword search"
            coding = (f"code_interpreter sandboxed ({code.wall_seconds:g} s, {code.memory_mb} MB)" if code
                      else "code_interpreter off (--code-interpreter runs it)")
            # already listening: connections made from now on wait in the backlog until uvicorn accepts them
            announce(f"runner serve: Assistants API on http://{shown}:{port}/v1 ({auth}; providers {models}; "
                     f"file_search {search}; {coding}; database {options.db})")
            asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
        finally:
            sock.close()
    finally:
        if lock is not None:
            os.close(lock)
