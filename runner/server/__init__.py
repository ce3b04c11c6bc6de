"""The built-in Assistants-compatible backend: HTTP app, SQLite store, run executor, model providers.

`Backend`, `BackendSettings` and `create_app` live in `runner.server.app`; they are re-exported lazily
because that module imports the SDK's types, and importing this package must stay cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Backend", "BackendSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from runner.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'runner.server' has no attribute {name!r}")
