"""The built-in Assistants-compatible backend: HTTP app, SQLite store, run executor, model providers."""

from runner.server.app import Backend, BackendSettings, create_app

__all__ = ["Backend", "BackendSettings", "create_app"]
