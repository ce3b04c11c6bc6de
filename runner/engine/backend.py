"""The SDK client for a backend: the embedded one in-process (no socket), or a remote endpoint."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.redact import Redactor, credible
from runner.server.providers import LiveSettings, model_problem
from runner.server.providers.upstream import BadKey, read_key
from runner.spec.model import BackendConfig, Spec

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from runner.server.app import Backend
    from runner.server.tools.code_interpreter.limits import CodeLimits

EMBEDDED_BASE_URL = "http://embedded.runner/v1"
DEFAULT_API_KEY_ENV = "RUNNER_API_KEY"


class BackendUnavailable(Exception):
    """The backend cannot be reached or configured (missing key, bad URL)."""


@dataclass(frozen=True)
class BackendTarget:
    """Where a batch's conversations run, after CLI flags and environment have overridden the spec."""

    config: BackendConfig

    @property
    def embedded(self) -> bool:
        """True for the in-process backend."""
        return self.config.embedded

    def describe(self) -> dict[str, Any]:
        """What the transcript records of the backend (never a key)."""
        if self.embedded:
            return {"kind": "embedded", "provider": self.config.provider,
                    "rules": len(self.config.rules) if self.config.rules is not None else None}
        return {"kind": "remote", "base_url": self.config.base_url, "api_key_env": self.config.api_key_env}


def resolve_backend(spec: Spec, base_url: str | None = None, api_key_env: str | None = None,
                    stream: bool | None = None) -> BackendTarget:
    """The backend a spec runs on: `--base-url`/RUNNER_BASE_URL first, then the spec's `backend`."""
    config = spec.backend
    url = base_url or os.environ.get("RUNNER_BASE_URL") or None
    if url:
        config = BackendConfig(base_url=url, api_key_env=api_key_env or config.api_key_env, stream=config.stream)
    elif api_key_env and not config.embedded:
        config = BackendConfig(base_url=config.base_url, api_key_env=api_key_env, stream=config.stream)
    if stream is not None:
        config = dataclasses.replace(config, stream=stream)
    return BackendTarget(config)


def code_limits(config: BackendConfig) -> CodeLimits:
    """The limits code runs under on the embedded backend: the code interpreter's defaults, with the spec's
    `backend.code_timeout` (wall time per call) and `backend.code_memory` (MB) where it gives them."""
    from runner.server.tools.code_interpreter.limits import CodeLimits

    chosen: dict[str, Any] = {}
    if config.code_timeout is not None:
        chosen["wall_seconds"] = float(config.code_timeout)
    if config.code_memory is not None:
        chosen["memory_mb"] = int(config.code_memory)
    return CodeLimits(**chosen)


def sandbox_problem() -> str | None:
    """Why code cannot run on this machine (what to install), or None when the code interpreter's sandbox starts.

    Checked before a batch whose specs run code on the embedded backend, so that such a spec fails as a spec error
    saying what to install, rather than each of its runs failing. The check starts the sandbox once per process.
    """
    from runner.server.tools.code_interpreter import SandboxUnavailable, prepare

    try:
        prepare()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


def preflight(spec: Spec, target: BackendTarget, *, replaying: bool = False) -> list[str]:
    """Problems that would make every run of this spec fail, found before anything runs: a model its backend
    cannot answer, user functions that cannot be imported, a check whose extra is not installed.

    `replaying`: cassettes answer the model calls, so a live provider needs no key.
    """
    problems = _code_problems(spec)
    if not target.embedded:
        return problems + _embedded_only(spec, target)
    if spec.runs_code:
        unavailable = sandbox_problem()
        if unavailable is not None:  # the backend would refuse every code call: say what to install, run nothing
            said = unavailable if unavailable.startswith("code_interpreter") else (
                f"code_interpreter cannot run code on this machine: {unavailable}")
            problems.append(f"{spec.code_where or spec.file}: assistant.tools: {said}")
    from runner.server.tools.file_search.embeddings import EmbeddingConfigError, embedding_settings

    try:
        embedding_settings(os.environ)
    except EmbeddingConfigError as exc:  # every file search of the backend would fail
        problems.append(f"{spec.file}: {exc}")
    if spec.assistant is None:
        return problems
    try:
        live = LiveSettings.from_env(os.environ, assume_openai=replaying)
    except BadKey as exc:
        return [*problems, f"{spec.model_where}: assistant.model: {exc}"]
    models = [(spec.model_where, "assistant.model", spec.assistant.model)] + [
        (turn.run.model_where, f"conversation[{turn.index}].run.model", turn.run.model)
        for turn in spec.turns if turn.run.model is not None]
    for where, field, model in models:
        problem = model_problem(model, force=target.config.provider, has_rules=target.config.rules is not None,
                                live=live)
        if problem:
            problems.append(f"{where}: {field}: {problem}")
    return problems


def _embedded_only(spec: Spec, target: BackendTarget) -> list[str]:
    """What a spec asks of the embedded backend that a remote endpoint cannot honour: run there, it would
    fail as if the prompt had regressed."""
    found = []
    where = spec.backend_where or spec.file
    if spec.backend.rules is not None:
        found.append(f"{where}: backend.rules: the rules of the `scripted` model configure the embedded backend, "
                     f"and {target.config.base_url} answers with its own provider; run it without --base-url, or "
                     "give the server the rules (`runner serve --rules FILE`) and drop them from the spec")
    if spec.backend.provider is not None:
        found.append(f"{where}: backend.provider: {spec.backend.provider!r} configures the embedded backend, and "
                     f"{target.config.base_url} answers with its own provider; run it without --base-url, or "
                     f"start the server with `--provider {spec.backend.provider}`")
    for key, value in (("code_timeout", spec.backend.code_timeout), ("code_memory", spec.backend.code_memory)):
        if value is not None:
            found.append(f"{where}: backend.{key}: it limits the embedded backend's code interpreter, and "
                         f"{target.config.base_url} runs code under its own limits; run it without --base-url, or "
                         f"start the server with `--code-interpreter --{key.replace('_', '-')} {value:g}`")
    return found


def _code_problems(spec: Spec) -> list[str]:
    from runner.spec.callables import CallableNotFound, resolve_callable, spec_callables

    problems = []
    for where, reference in spec_callables(spec):
        try:
            resolve_callable(reference, spec.file)
        except CallableNotFound as exc:
            problems.append(f"{where}: {exc}")
    if _uses_check(spec, "similar"):
        from runner.expect import similarity

        if not similarity.available():
            problems.append(f"{spec.file}: {similarity.INSTALL_HINT}")
    return problems


def _uses_check(spec: Spec, kind: str) -> bool:
    def walk(checks: Any) -> bool:
        return any(c.type == kind or (c.type == "not" and walk([c.arg])) or (c.type in ("all", "any") and walk(c.arg))
                   for c in checks)

    return walk(spec.expect) or any(walk(turn.expect) for turn in spec.turns)


def embedded_client(backend: Backend) -> AsyncOpenAI:
    """An AsyncOpenAI client reaching `backend` in-process (no socket), responses streamed as produced."""
    import httpx2

    from runner.engine.asgi import StreamingASGITransport
    from runner.sdk import async_client
    from runner.server.app import create_app

    transport = StreamingASGITransport(create_app(backend), on_close=backend.aclose)
    http_client = httpx2.AsyncClient(transport=transport, base_url=EMBEDDED_BASE_URL)
    # in-process calls cannot be rate limited or dropped: retries would only hide bugs
    return async_client(api_key="embedded", base_url=EMBEDDED_BASE_URL, http_client=http_client, max_retries=0)


def secret_values(target: BackendTarget, extra_env: tuple[str, ...] = ()) -> dict[str, str]:
    """Every credential this run could send anywhere, by the variable holding it: kept out of cassettes."""
    names = ["OPENAI_API_KEY", "RUNNER_CHAT_API_KEY", "RUNNER_EMBEDDINGS_API_KEY", DEFAULT_API_KEY_ENV, *extra_env]
    if target.config.api_key_env:
        names.append(target.config.api_key_env)
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def redactor_for(target: BackendTarget, extra_env: tuple[str, ...] = ()) -> Redactor:
    """What replaces this run's secrets by `<NAME>` in everything written or printed: the API keys of every
    provider and of the endpoint (unless too short to be keys: `ollama`, `EMPTY`), and the values of the
    variables in `extra_env` (`--secret-env`, and what env files loaded), whatever their length."""
    values = secret_values(target, extra_env)
    return Redactor({name: value for name, value in values.items() if name in extra_env or credible(value)})


def open_client(target: BackendTarget, *, max_retries: int = 2, replaying: bool = False,
                code: bool = False) -> AsyncOpenAI:
    """An AsyncOpenAI client for the target; the embedded backend gets a fresh in-process instance, whose
    `openai` provider needs no key when cassettes may answer (`replaying`), and which executes code only with
    `code` (a spec of the batch has the code_interpreter tool), under the spec's limits."""
    from runner.sdk import async_client

    if target.embedded:
        from runner.record.cassettes import routed_http_client
        from runner.server.app import Backend, BackendSettings
        from runner.server.tools.file_search.embeddings import EmbeddingConfigError, embedding_settings

        # the model providers' and the embedding endpoint's traffic is what cassettes hold on the embedded backend
        try:
            live = LiveSettings.from_env(os.environ, assume_openai=replaying).with_http_client(routed_http_client)
            embeddings = embedding_settings(os.environ)
        except (BadKey, EmbeddingConfigError) as exc:
            raise BackendUnavailable(str(exc)) from None
        settings = BackendSettings(rules=target.config.rules, provider=target.config.provider, live=live,
                                   embeddings=embeddings.with_http_client(routed_http_client) if embeddings else None,
                                   code_interpreter=code_limits(target.config) if code else None)
        return embedded_client(Backend(settings))
    env_name = target.config.api_key_env or DEFAULT_API_KEY_ENV
    try:
        key = read_key(os.environ, env_name)
    except BadKey as exc:
        raise BackendUnavailable(str(exc)) from None
    if target.config.api_key_env and not key:
        raise BackendUnavailable(f"the environment variable {env_name} (backend.api_key_env) is not set")
    from runner.record.cassettes import routed_http_client

    return async_client(api_key=key or "unused", base_url=target.config.base_url, max_retries=max_retries,
                       http_client=routed_http_client())
