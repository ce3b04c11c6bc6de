"""What the live providers share: their configuration, and turning upstream failures into run errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.redact import Redactor, credible
from runner.server.providers.base import ModelError

LIVE_PROVIDERS = ("openai", "chat")


@dataclass(frozen=True)
class UpstreamConfig:
    """Where a live provider sends its model calls. The key is never shown (repr=False)."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    max_retries: int = 2
    timeout: float = 120.0
    # makes the HTTP client for the upstream (the runner routes it through cassettes); None: the SDK's own
    http_client_factory: Callable[[], Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class LiveSettings:
    """The live providers a backend offers and which one answers model names without a `provider/` prefix."""

    openai: UpstreamConfig | None = None
    chat: UpstreamConfig | None = None
    default: str = "openai"
    # more secrets to keep out of what the backend stores and logs, by variable (`runner serve --api-key-env`)
    others: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, assume_openai: bool = False) -> LiveSettings:
        """Read the documented variables: OPENAI_API_KEY and OPENAI_BASE_URL configure `openai` exactly as they
        configure the SDK; RUNNER_CHAT_BASE_URL (and RUNNER_CHAT_API_KEY) a Chat Completions server;
        RUNNER_DEFAULT_PROVIDER picks the default live provider. With `assume_openai` (cassettes can answer),
        `openai` is offered even without a key: a replay needs none."""
        openai = None
        if environ.get("OPENAI_API_KEY") or environ.get("OPENAI_BASE_URL") or assume_openai:
            openai = UpstreamConfig(base_url=environ.get("OPENAI_BASE_URL") or None,
                                    api_key=read_key(environ, "OPENAI_API_KEY"))
        chat = None
        if environ.get("RUNNER_CHAT_BASE_URL"):
            chat = UpstreamConfig(base_url=environ["RUNNER_CHAT_BASE_URL"],
                                  api_key=read_key(environ, "RUNNER_CHAT_API_KEY"))
        default = environ.get("RUNNER_DEFAULT_PROVIDER") or ("chat" if chat and not openai else "openai")
        return cls(openai=openai, chat=chat, default=default)

    def with_http_client(self, factory: Callable[[], Any]) -> LiveSettings:
        """The same settings, every upstream reached through clients made by `factory`."""
        def routed(config: UpstreamConfig | None) -> UpstreamConfig | None:
            return dataclasses.replace(config, http_client_factory=factory) if config else None

        return dataclasses.replace(self, openai=routed(self.openai), chat=routed(self.chat))

    def with_secrets(self, secrets: Mapping[str, str]) -> LiveSettings:
        """The same settings, with more secrets (by variable name) kept out of what the backend stores."""
        return dataclasses.replace(self, others=(*self.others, *secrets.items()))

    def secrets(self) -> dict[str, str]:
        """Every configured key by the variable that holds it (a placeholder key such as `ollama` is none),
        to be replaced by `<NAME>` in anything stored or shown."""
        found = {name: config.api_key for name, config in (("OPENAI_API_KEY", self.openai),
                                                           ("RUNNER_CHAT_API_KEY", self.chat))
                 if config is not None and config.api_key}
        found.update(self.others)
        return {name: value for name, value in found.items() if credible(value)}


class BadKey(ValueError):
    """An API key variable whose value cannot be sent (it would end up quoted in an HTTP error)."""


def read_key(environ: Mapping[str, str], name: str) -> str | None:
    """The API key in variable `name`, surrounding whitespace removed (a CRLF .env leaves a \r); None
    when unset. A key with control characters inside is refused, naming the variable, never the value."""
    value = (environ.get(name) or "").strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise BadKey(f"the environment variable {name} holds control characters: it is not a usable API key")
    return value or None


def upstream_error(exc: BaseException, provider: str, redact: Redactor) -> ModelError:
    """A failed model call as the run's `last_error` (`rate_limit_exceeded`, `invalid_prompt` or `server_error`)."""
    code, text = describe_failure(exc)
    return ModelError(redact.text(f"{provider} provider: {text}"), code)


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(error code, what happened) for a failed upstream call, worded for any caller to prefix with who called:
    `rate_limit_exceeded`, `invalid_prompt` for a refused request, `server_error` otherwise. Not redacted."""
    import openai

    from runner.server.providers.retries import refuses_the_request

    def body_message(error: Any) -> str:
        body = getattr(error, "body", None)
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"])
        return str(getattr(error, "message", "") or error)

    if isinstance(exc, openai.RateLimitError):
        return "rate_limit_exceeded", f"rate limited upstream (429) after retries: {body_message(exc)}"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "server_error", f"the upstream rejected the credentials ({exc.status_code}): {body_message(exc)}"
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError | openai.NotFoundError):
        return "invalid_prompt", f"the upstream refused the request ({exc.status_code}): {body_message(exc)}"
    if isinstance(exc, openai.APIStatusError) and refuses_the_request(exc.response):
        return "invalid_prompt", f"the upstream refused the request ({exc.status_code}, not retried): " \
                                 f"{body_message(exc)}"
    if isinstance(exc, openai.APIStatusError):
        return "server_error", f"upstream error {exc.status_code} after retries: {body_message(exc)}"
    if isinstance(exc, openai.APITimeoutError):
        return "server_error", "the upstream did not answer in time (after retries)"
    if isinstance(exc, openai.APIConnectionError):
        return "server_error", f"cannot reach the upstream: {exc.__cause__ or exc}"
    return "server_error", f"{type(exc).__name__}: {exc}"


class UpstreamProvider:
    """What the live providers share: their upstream, the secrets kept out of their errors, and one SDK
    client made on first use (in the event loop that uses it)."""

    name = "upstream"

    def __init__(self, config: UpstreamConfig, redact: Redactor) -> None:
        self.config = config
        self.redact = redact
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = client_for(self.config)
        return self._client


def client_for(config: UpstreamConfig) -> Any:
    """An AsyncOpenAI client for an upstream: the SDK's bounded retries (honouring retry-after), for the
    failures a retry can fix only (see runner.server.providers.retries)."""
    from runner.sdk import async_client
    from runner.server.providers.retries import UpstreamClient

    http_client = config.http_client_factory() if config.http_client_factory else None
    return async_client(UpstreamClient, api_key=config.api_key or "unused", base_url=config.base_url,
                        max_retries=config.max_retries, timeout=config.timeout, http_client=http_client)
