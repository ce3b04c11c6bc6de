"""Model providers: who answers a run's model calls, chosen by the model's name.

`echo` and `scripted` are offline. `openai` (Responses API) and `chat` (any Chat Completions server) are
live. A model name picks its provider: `echo` and `scripted` themselves; `provider/model` explicitly
(`chat/llama3.2`, `openai/gpt-4o`); any other name goes to the default live provider. Importing this
package does not import the SDK.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.redact import Redactor
from runner.server.errors import invalid
from runner.server.providers.base import ModelError, ModelReply, ModelRequest, Provider, ToolCallRequest
from runner.server.providers.chat import ChatCompletionsProvider
from runner.server.providers.echo import EchoProvider
from runner.server.providers.openai_responses import OpenAIResponsesProvider
from runner.server.providers.scripted import ScriptedProvider
from runner.server.providers.upstream import LIVE_PROVIDERS, LiveSettings, UpstreamConfig

OFFLINE_MODELS = ("echo", "scripted")
PROVIDER_NAMES = (*OFFLINE_MODELS, *LIVE_PROVIDERS)

__all__ = [
    "LIVE_PROVIDERS", "OFFLINE_MODELS", "PROVIDER_NAMES", "ChatCompletionsProvider", "EchoProvider", "LiveSettings",
    "ModelError", "ModelReply", "ModelRequest", "OpenAIResponsesProvider", "Provider", "ProviderSet",
    "ScriptedProvider", "ToolCallRequest", "UpstreamConfig", "route",
]

_HOW_TO_CONFIGURE = {
    "openai": "set OPENAI_API_KEY (and OPENAI_BASE_URL for another Responses-compatible server)",
    "chat": "set RUNNER_CHAT_BASE_URL to the server's /v1 URL (and RUNNER_CHAT_API_KEY if it needs a key)",
    "scripted": "give the backend its rules (backend.rules in a spec, --rules for runner serve)",
}


def route(model: str, force: str | None, default_live: str) -> tuple[str, str]:
    """(provider name, model name sent upstream) for a model name."""
    if force:  # every model goes to the forced provider; a `force/` prefix is still not sent upstream
        return force, model.removeprefix(f"{force}/")
    prefix, slash, rest = model.partition("/")
    if slash and prefix in PROVIDER_NAMES and rest:
        return prefix, rest
    if model in OFFLINE_MODELS:
        return model, model
    return default_live, model


def model_problem(model: str, *, force: str | None, has_rules: bool, live: LiveSettings) -> str | None:
    """Why `model` cannot run on a backend configured so, or None when it can."""
    name, _ = route(model, force, live.default)
    available = {"echo": True, "scripted": has_rules, "openai": live.openai is not None, "chat": live.chat is not None}
    if available.get(name, False):
        return None
    if name not in available:
        return f"the model '{model}' names an unknown provider '{name}' (providers: {', '.join(PROVIDER_NAMES)})"
    if name == "scripted":
        return f"the `scripted` model needs rules: {_HOW_TO_CONFIGURE['scripted']}"
    return (f"the model '{model}' goes to the `{name}` provider, which is not configured: {_HOW_TO_CONFIGURE[name]}; "
            f"or use an offline model ({', '.join(OFFLINE_MODELS)})")


class ProviderSet:
    """The providers one backend offers, and which model name goes to which."""

    def __init__(self, *, rules: Sequence[dict[str, Any]] | None = None, force: str | None = None,
                 live: LiveSettings | None = None) -> None:
        self.live = live or LiveSettings()
        self.force = force
        # what the providers' replies and errors must never carry into the store: their own keys
        self.redact = Redactor(self.live.secrets())
        self.providers: dict[str, Provider] = {"echo": EchoProvider()}
        if rules is not None:
            self.providers["scripted"] = ScriptedProvider(rules)
        if self.live.openai is not None:
            self.providers["openai"] = OpenAIResponsesProvider(self.live.openai, self.redact)
        if self.live.chat is not None:
            self.providers["chat"] = ChatCompletionsProvider(self.live.chat, self.redact)

    def resolve(self, model: str) -> tuple[Provider, str]:
        """The provider answering `model` and the model name it sends upstream; 400 naming the model if none."""
        name, upstream = route(model, self.force, self.live.default)
        provider = self.providers.get(name)
        if provider is None:
            problem = model_problem(model, force=self.force, has_rules="scripted" in self.providers, live=self.live)
            raise invalid(f"{problem[0].upper()}{problem[1:]}." if problem else f"No provider for '{model}'.", "model")
        return provider, upstream

    def for_model(self, model: str) -> Provider:
        """The provider answering `model` (see resolve)."""
        return self.resolve(model)[0]
