"""Cassettes: each conversation's model-provider (or remote-endpoint) HTTP traffic, recorded and replayed
with vcrpy.

vcrpy patches clients process-wide, which cannot give concurrent conversations a cassette each. So the
runner routes requests itself: every client that may reach the network gets a `CassetteRouter`
transport, and the router sends each request through the cassette of the conversation that made it
(a context variable, inherited by the backend's run tasks). Recording, playback, matching,
serialisation and filtering are vcrpy's own (`Cassette`, its httpx stub, its matchers).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
from openai import OpenAIError

from runner.redact import Redactor
from runner.report.writers import atomic_write
from runner.spec.model import Spec
from runner.spec.paths import output_stem

RECORD_MODES = ("none", "once", "new_episodes", "all")
REPLAYING_MODES = ("none", "once", "new_episodes")  # modes in which a cassette may answer instead of the network
# headers that carry credentials: never written to a cassette
SECRET_HEADERS = ("authorization", "api-key", "x-api-key", "openai-organization", "openai-project", "cookie",
                  "set-cookie", "proxy-authorization")
# headers that only say which SDK build sent the request, or are random per request: dropped so cassettes
# diff clean across machines and recordings
_NOISE_HEADER_PREFIXES = ("x-stainless-", "idempotency-key")
# where a request went is not what it asked: a recording replays whatever host, port or scheme the model
# provider or the endpoint has today (`runner serve --port 0`, another RUNNER_CHAT_BASE_URL)
MATCH_ON = ("method", "path", "query", "body")


def can_replay(mode: str | None, directory: Path, spec: Spec) -> bool:
    """Whether a cassette will answer this conversation's calls (so live providers need no key)."""
    if mode == "none":
        return True
    return mode in REPLAYING_MODES and cassette_for(directory, spec, mode)[0].is_file()


def cassette_for(directory: Path, spec: Spec, mode: str) -> tuple[Path, str]:
    """The cassette a conversation records to or replays from, and in which mode.

    A repeat (`--repeat`) without a cassette of its own replays its conversation's, read-only, when the mode
    only replays or records what is missing: a suite recorded once runs offline with any `--repeat`.
    """
    own = cassette_path(directory, spec.file, spec.case)
    if spec.repeats is not None and mode in ("none", "once") and not own.is_file():
        shared = cassette_path(directory, spec.file, spec.repeats)
        if shared.is_file():
            return shared, "none"
    return own, mode


def default_record_mode(environ: dict[str, str] | os._Environ[str]) -> str:
    """`none` in CI (the CI variable is set), `once` elsewhere."""
    return "none" if environ.get("CI") else "once"


def cassette_path(directory: Path, spec_file: str, case: str = "") -> Path:
    """A conversation's cassette: its output stem (see runner.spec.paths) under `directory`, as .yaml."""
    stem = output_stem(spec_file, case)
    return directory / stem.with_name(stem.name + ".yaml")


class _AtomicPersister:
    """vcrpy's filesystem persister, but a cassette is replaced whole (temp file + rename) or not at all."""

    @classmethod
    def load_cassette(cls, cassette_path: Any, serializer: Any) -> Any:
        from vcr.persisters.filesystem import FilesystemPersister

        return FilesystemPersister.load_cassette(cassette_path, serializer)

    @staticmethod
    def save_cassette(cassette_path: Any, cassette_dict: Any, serializer: Any) -> None:
        from vcr.serialize import serialize

        atomic_write(Path(cassette_path), serialize(cassette_dict, serializer))


class _FreshPersister(_AtomicPersister):
    """For `--record all`: the cassette's old interactions are not loaded, so it is recorded again from nothing
    (vcrpy's `all` would keep them, and a re-recorded cassette would grow with every recording)."""

    @classmethod
    def load_cassette(cls, cassette_path: Any, serializer: Any) -> Any:
        from vcr.persisters.filesystem import CassetteNotFoundError

        raise CassetteNotFoundError()


# a tool call id as backends make them (`call_` and random letters): the backend names the calls it makes
# itself (a forced file_search) anew in every run, so bodies are compared with such ids numbered in order
_CALL_ID = re.compile(r"call_[A-Za-z0-9]{8,64}")


def _ids_by_order(value: Any, seen: dict[str, str]) -> Any:
    """A JSON value with every string that is a tool call id replaced by its order of first appearance."""
    if isinstance(value, str):
        return seen.setdefault(value, f"call_#{len(seen)}") if _CALL_ID.fullmatch(value) else value
    if isinstance(value, dict):
        return {key: _ids_by_order(item, seen) for key, item in value.items()}
    if isinstance(value, list):
        return [_ids_by_order(item, seen) for item in value]
    return value


def _comparable_body(body: Any) -> Any:
    """A request body as cassettes compare it: parsed JSON with its tool call ids numbered; else its text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body or ""
    try:
        return _ids_by_order(json.loads(text), {})
    except ValueError:
        return text


def _same_body(recorded: Any, sent: Any) -> None:
    """vcrpy's `body` matcher for cassettes: equal bodies but for the tool call ids a backend makes up."""
    if _comparable_body(recorded.body) != _comparable_body(sent.body):
        raise AssertionError("the bodies differ")


def _clean_request(request: Any) -> Any:
    for name in list(request.headers):
        lowered = name.lower()
        if lowered in SECRET_HEADERS or lowered.startswith(_NOISE_HEADER_PREFIXES):
            del request.headers[name]
    return request


def _clean_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() in SECRET_HEADERS:
            del headers[name]
    return response


def _hide_secrets(redact: Redactor) -> Any:
    """A vcrpy save hook writing every form of every secret in an interaction (as written, JSON-escaped,
    URL-encoded...) as `<NAME>`, longest first."""
    def hide(request: Any, response: Any) -> tuple[Any, Any]:
        return type(request)._from_dict(redact.data(request._to_dict())), redact.data(response)

    return hide


def _restore_secrets(secrets: Mapping[str, str]) -> Any:
    """A vcrpy load hook putting each secret back where `<NAME>` stands, in the form its place needs:
    JSON-escaped in a JSON body, URL-encoded in the URI, as written elsewhere; so a replayed request matches
    what the SDK sends with today's value, whatever characters it has."""
    values = {f"<{name}>": value for name, value in secrets.items() if value}
    if not values:
        return None
    pattern = re.compile("|".join(map(re.escape, sorted(values, key=len, reverse=True))))

    def put_back(text: Any, form: Callable[[str], str] | None) -> Any:
        if isinstance(text, bytes):
            try:
                return put_back(text.decode("utf-8"), form).encode("utf-8")
            except UnicodeDecodeError:
                return text
        if not isinstance(text, str) or not pattern.search(text):
            return text
        shape = form or (_json_escaped if _is_json(text) else str)  # no form given: a body
        return pattern.sub(lambda match: shape(values[match.group(0)]), text)

    def headers(found: Any) -> Any:
        return {name: [put_back(v, str) for v in value] if isinstance(value, list) else put_back(value, str)
                for name, value in (found or {}).items()}

    def restore(request: Any, response: Any) -> tuple[Any, Any]:
        data = request._to_dict()
        data.update(uri=put_back(data["uri"], lambda value: quote(value, safe="")),
                    body=put_back(data["body"], None), headers=headers(data["headers"]))
        response = dict(response, headers=headers(response.get("headers")))
        if isinstance(response.get("body"), dict):
            response["body"] = {**response["body"], "string": put_back(response["body"].get("string"), None)}
        return type(request)._from_dict(data), response

    return restore


def _json_escaped(value: str) -> str:
    return json.dumps(value)[1:-1]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def load_cassette(path: Path, mode: str, secrets: Mapping[str, str]) -> Any:
    """A vcrpy cassette at `path` in `mode`, with credentials filtered out before anything is written.

    Each secret, in every form it takes, is written as `<NAME>` after the variable holding it, and put back
    when the cassette is loaded, so requests match whatever the secret's value is at replay.
    """
    import vcr
    from vcr.cassette import Cassette

    recorder = vcr.VCR(
        record_mode=mode, match_on=MATCH_ON, decode_compressed_response=True, filter_headers=SECRET_HEADERS,
        before_record_request=_clean_request, before_record_response=_clean_response,
        before_save_interaction=_hide_secrets(Redactor(secrets)), after_load_interaction=_restore_secrets(secrets),
    )
    recorder.register_matcher("body", _same_body)
    config = recorder.get_merged_config(path=str(path),
                                        persister=_FreshPersister if mode == "all" else _AtomicPersister)
    accepted = inspect.signature(Cassette.__init__).parameters
    return Cassette.load(**{k: v for k, v in config.items() if k in accepted})


class ReplayMismatch(OpenAIError):
    """A request that is not in the cassette while recording is off. An OpenAIError, so the SDK fails at
    once instead of retrying it."""


@dataclass
class CassetteSession:
    """One conversation's cassette and what the engine tells it (which turn is running).

    The cassette is loaded on the first request that goes through it: most conversations on the offline
    models make none, and loading one costs more than the whole conversation.
    """

    spec_file: str
    path: Path
    mode: str
    secrets: Mapping[str, str]
    turn: int | None = None
    mismatches: list[tuple[int | None, str]] = field(default_factory=list)
    loaded: Any = None

    @property
    def cassette(self) -> Any:
        """The vcrpy cassette, loaded now if it was not yet."""
        if self.loaded is None:
            self.loaded = load_cassette(self.path, self.mode, self.secrets)
        return self.loaded

    def explain(self, exc: Any) -> str:
        """A one-line account of a request the cassette cannot answer."""
        request = exc.failed_request
        where = f"turn {self.turn + 1} of {self.spec_file}" if self.turn is not None else self.spec_file
        sent = f"{request.method} {request.uri}"
        reason = getattr(exc, "reason", "")
        if reason == "cassette_not_found":
            why = f"there is no cassette at {self.path}"
            fix = "record it with `--record once` (the default outside CI)"
        else:
            if reason == "no_match" and exc.similar_requests:
                recorded, _, failed = _closest(exc)
                why = (f"it differs from the closest request recorded in {self.path}: "
                       f"{difference(recorded, request, [name for name, _ in failed])}")
            elif reason == "already_played":
                why = f"the recording in {self.path} has no more answers for it (the conversation made more calls)"
            else:
                why = f"nothing like it is in {self.path}"
            fix = ("the prompt or the conversation changed since the recording: re-record with "
                   "`--record new_episodes` (add the new requests) or `--record all` (record everything again)")
        return f"replay: {where} sent {sent}, but {why}; {fix}"


def _closest(exc: Any) -> Any:
    """Of the recorded requests that match as well as any, the first not yet played: the one this request
    stands in for (the ones before it were answered already)."""
    cassette = exc.cassette
    played = {id(request) for index, request in enumerate(getattr(cassette, "requests", []))
              if getattr(cassette, "play_counts", {}).get(index)}
    return next((similar for similar in exc.similar_requests if id(similar[0]) not in played),
                exc.similar_requests[0])


def difference(recorded: Any, sent: Any, parts: list[str]) -> str:
    """What differs between a recorded request and the one sent, part by part (`parts`: vcrpy's matcher
    names that failed), down to the first differing field of a JSON body."""
    said = []
    for part in parts:
        if part in ("body", _same_body.__name__):  # vcrpy names a failed matcher by its function
            said.append(f"its body {_body_difference(recorded.body, sent.body)}")
        elif part in ("method", "path", "query"):
            said.append(f"its {part}: the recording has {_clip(getattr(recorded, part))}, this run sent "
                        f"{_clip(getattr(sent, part))}")
        else:
            said.append(f"its {part}")
    return "; ".join(said) or "nothing the matchers name"


def _body_difference(recorded: Any, sent: Any) -> str:
    where, old, new = _first_difference(_comparable_body(recorded), _comparable_body(sent), "")
    at = f"at {where}" if where else "as a whole"
    return f"{at}: the recording has {_clip(old)}, this run sent {_clip(new)}"


_MISSING = object()


def _first_difference(old: Any, new: Any, where: str) -> tuple[str, Any, Any]:
    """The path to the first place two JSON values differ, and the two values there."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            if old.get(key, _MISSING) != new.get(key, _MISSING):
                return _first_difference(old.get(key, _MISSING), new.get(key, _MISSING),
                                         f"{where}.{key}" if where else str(key))
    elif isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            left = old[index] if index < len(old) else _MISSING
            right = new[index] if index < len(new) else _MISSING
            if left != right:
                return _first_difference(left, right, f"{where}[{index}]")
    return where, old, new


def _clip(value: Any, limit: int = 120) -> str:
    if value is _MISSING:
        return "nothing"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


_current: contextvars.ContextVar[CassetteSession | None] = contextvars.ContextVar("runner_cassette", default=None)


def current_session() -> CassetteSession | None:
    """The cassette the current conversation's traffic goes through, if any."""
    return _current.get()


@contextlib.contextmanager
def recording(path: Path, mode: str, spec_file: str, secrets: Mapping[str, str]) -> Iterator[CassetteSession]:
    """Route this conversation's traffic (and that of the runs it starts) through its cassette; save it at
    the end when anything new was recorded, unless the conversation was cut short (Ctrl-C, cancelled): half a
    conversation's cassette would fail its next replay."""
    session = CassetteSession(spec_file, path, mode, secrets)
    token = _current.set(session)
    try:
        yield session
    finally:
        _current.reset(token)
    if session.loaded is not None:
        session.loaded._save()


class CassetteRouter(httpx2.AsyncBaseTransport):
    """A transport that sends each request through the current conversation's cassette, if any."""

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Play, record or pass through, as the current cassette's record mode says."""
        session = _current.get()
        if session is None:
            return await self.inner.handle_async_request(request)
        from vcr.errors import CannotOverwriteExistingCassetteException
        from vcr.stubs.httpx_stubs import vcr_handle_async_request

        handler = vcr_handle_async_request(session.cassette, type(self.inner).handle_async_request, httpx2)
        try:
            response: httpx2.Response = await handler(self.inner, request)
        except CannotOverwriteExistingCassetteException as exc:
            message = session.explain(exc)
            session.mismatches.append((session.turn, message))
            raise ReplayMismatch(message) from None
        return response

    async def aclose(self) -> None:
        """Close the real transport."""
        await self.inner.aclose()


def routed_http_client() -> Any:
    """An httpx2 client with the SDK's defaults whose requests go through the cassette router."""
    from openai import DefaultAsyncHttpxClient

    return DefaultAsyncHttpxClient(transport=CassetteRouter())
