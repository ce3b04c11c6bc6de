"""`runner serve`: the built-in backend over real HTTP (uvicorn), for any Assistants client."""

from __future__ import annotations

import asyncio
import ipaddress
import os
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


def serve(options: ServeOptions, announce: Callable[[str], None] = print) -> None:
    """Run the server until SIGINT/SIGTERM; `announce` receives one line per lifecycle event."""
    import uvicorn

    from runner.server.app import Backend, BackendSettings, create_app
    from runner.server.providers import LiveSettings

    key = api_key(options)
    live = LiveSettings.from_env(options.environ)
    backend = Backend(BackendSettings(db_path=options.db, rules=options.rules, provider=options.provider,
                                      api_key=key, live=live))
    if backend.recovered:
        announce(f"marked {backend.recovered} run(s) failed: they were executing when the server last stopped")
    config = uvicorn.Config(create_app(backend), host=options.host, port=options.port, log_level=options.log_level,
                            lifespan="on", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            host, port = server.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            auth = "Bearer key required" if key else "no key required"
            models = ", ".join(sorted(backend.providers.providers))
            announce(f"runner serve: Assistants API on http://{shown}:{port}/v1 ({auth}; providers {models}; "
                     f"database {options.db})")
        await task

    asyncio.run(run())
