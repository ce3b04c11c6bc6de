"""Model providers: who answers a run's model calls, chosen by the model's name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.server.errors import invalid
from runner.server.providers.base import ModelError, ModelReply, ModelRequest, Provider, ToolCallRequest
from runner.server.providers.echo import EchoProvider
from runner.server.providers.scripted import ScriptedProvider

OFFLINE_MODELS = ("echo", "scripted")

__all__ = [
    "OFFLINE_MODELS", "EchoProvider", "ModelError", "ModelReply", "ModelRequest", "Provider", "ProviderSet",
    "ScriptedProvider", "ToolCallRequest",
]


class ProviderSet:
    """The providers one backend offers, and which model name goes to which."""

    def __init__(self, *, rules: Sequence[dict[str, Any]] | None = None, force: str | None = None) -> None:
        self.providers: dict[str, Provider] = {"echo": EchoProvider()}
        if rules is not None:
            self.providers["scripted"] = ScriptedProvider(rules)
        self.force = force

    def for_model(self, model: str) -> Provider:
        """The provider that answers `model`; a 400 naming the model when there is none."""
        name = self.force or model
        provider = self.providers.get(name)
        if provider is not None:
            return provider
        if name == "scripted":
            raise invalid("The `scripted` model needs rules: give the backend a rules list or file.", "model")
        raise invalid(
            f"The model '{model}' does not exist on this backend: its offline models are "
            f"{', '.join(OFFLINE_MODELS)} (live providers are not configured).",
            "model",
        )
