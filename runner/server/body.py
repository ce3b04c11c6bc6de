"""Reading a request's JSON body without trusting it: a size limit, strict UTF-8 and JSON, a nesting limit.

Every route reads its body here, so what a hostile client sends is refused with a 4xx in the API's error
shape before any route sees it: a body over `MAX_BODY_BYTES` (413, checked from Content-Length before
reading and counted while reading a chunked body), bytes that are not UTF-8, JSON that is not strict
(NaN, Infinity, numbers that overflow, a key given twice), nesting deeper than `MAX_DEPTH`, strings with
a lone UTF-16 surrogate (no encoder can write them back), and bodies that are not one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from starlette.requests import ClientDisconnect, Request

from runner.server.errors import APIError, invalid, shown

# 8 MiB: room for an assistant at the API's own limits (256,000 characters of instructions are 1.5 MB when
# each is escaped as \uXXXX, plus 128 tools) or a thread of several long messages, while the worst body
# (millions of tiny arrays) still parses and walks in about a second, off the event loop
MAX_BODY_BYTES = 8 * 1024 * 1024
_INLINE_BYTES = 256 * 1024  # smaller bodies parse in a millisecond or so: not worth a thread

# 64 nested arrays and objects: a request's deepest part, a function's JSON Schema, needs a dozen or two;
# far below Python's recursion limit, which json, pydantic and the encoders would otherwise hit
MAX_DEPTH = 64

_DIGITS = re.compile(r"[0-9]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how a surrogate can reach a strictly decoded body
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPES = ("application/json",)
_CONTAINERS = (dict, list)  # exactly what json.loads makes


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def too_large(detail: str) -> APIError:
    """413 for a body over the limit; the connection is closed, as the rest of the body is never read."""
    return APIError(413, f"{detail} The maximum request body size is {MAX_BODY_BYTES} bytes "
                         f"({MAX_BODY_BYTES // (1024 * 1024)} MiB).",
                    code="request_too_large", headers={"connection": "close"})


def _declared(request: Request, limit: int) -> APIError | None:
    """The error a Content-Length header alone earns: not a number (400) or over `limit` (413)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    declared = declared.strip()
    if not _DIGITS.fullmatch(declared):
        return invalid("The Content-Length header is not a number of bytes.")
    if len(declared) > 15 or int(declared) > limit:
        return too_large(f"Your request body is {shown(declared, 20)} bytes.")
    return None


async def read_bytes(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, or a 413 as soon as it is known to be over `limit` bytes (the rest stays unread)."""
    error = _declared(request, limit)
    if error is not None:
        raise error
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked, or longer than it said: stop reading here
            raise too_large("Your request body is larger than that.")
        chunks.append(chunk)
    request.state.body_read = True
    return b"".join(chunks)


async def rest_is_dropped(request: Request, limit: int = MAX_BODY_BYTES) -> bool:
    """After a route answered without reading the body (a 404 for its path, say), read and drop the body
    up to `limit`; False when more is left, and the connection must close rather than read it all."""
    if getattr(request.state, "body_read", False):
        return True
    if _declared(request, limit) is not None:
        return False
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return False
    except ClientDisconnect:
        return False
    return True


def _media_type(request: Request) -> str | None:
    value = request.headers.get("content-type")
    return value.split(";", 1)[0].strip().lower() if value is not None else None


async def read_object(request: Request) -> dict[str, Any]:
    """The request's JSON body as an object (`{}` when the body is empty), checked as the module says."""
    raw = await read_bytes(request)
    if not raw:
        return {}
    media = _media_type(request)
    if media is not None and media not in _JSON_TYPES and not media.endswith("+json"):
        given = shown(request.headers["content-type"])
        raise invalid(f"Unsupported content type: '{given}'. This API method only accepts 'application/json' "
                      f"requests, but you specified the header 'Content-Type: {given}'. Please try again with "
                      "a supported content type.")
    if len(raw) > _INLINE_BYTES:  # other requests go on being served while a big body is parsed
        return await asyncio.to_thread(parse_object, raw)
    return parse_object(raw)


async def read_form(request: Request, limit: int, files: tuple[str, ...]) -> tuple[dict[str, str], dict[str, Any]]:
    """A multipart/form-data body within `limit` bytes (413 beyond, as `read_bytes`): its text fields, and the
    uploaded files named in `files` (starlette UploadFiles, spooled to disk past a megabyte). A field given
    twice, a file where text belongs or text where a file belongs is a 400 naming it."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    media = _media_type(request)
    if media != "multipart/form-data":
        given = shown(request.headers.get("content-type", ""))
        raise invalid(f"Unsupported content type: '{given}'. This API method only accepts 'multipart/form-data' "
                      "requests.")
    error = _declared(request, limit)
    if error is not None:
        raise error

    async def counted() -> Any:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large("Your request body is larger than that.")
            yield chunk
        request.state.body_read = True

    parser = MultiPartParser(request.headers, counted(), max_files=len(files), max_fields=16,
                             max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise invalid(f"The multipart body could not be read: {shown(str(exc.message))}.") from None
    fields: dict[str, str] = {}
    uploaded: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name in fields or name in uploaded:
            raise invalid(f"The form gives '{shown(name)}' more than once.", name)
        if isinstance(value, str):
            if name in files:
                raise invalid(f"'{shown(name)}' must be a file, not a text field.", name)
            fields[name] = value
        elif name in files:
            uploaded[name] = value
        else:
            raise invalid(f"'{shown(name)}' must be a text field, not a file.", name)
    return fields, uploaded


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to infinity, which JSON cannot carry back
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _integer(text: str) -> int:
    if len(text) > 100:  # int() of thousands of digits is slow, then refused by Python itself
        raise ValueError(f"the integer {text[:20]}… has {len(text)} digits")
    return int(text)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    # json makes no reference cycles, and millions of new containers would set off collection after collection
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_object(raw: bytes) -> dict[str, Any]:
    """`raw` parsed as one strict JSON object; a 400 saying what is wrong when it is not one."""
    try:
        text = raw.decode("utf-8")  # strict: json.loads(bytes) would let encoded surrogates through
    except UnicodeDecodeError as exc:
        raise invalid(f"The request body is not valid UTF-8 (at byte {exc.start}).") from None
    try:
        with _collector_paused():
            body = json.loads(text, parse_float=_finite, parse_int=_integer, parse_constant=_constant,
                              object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise invalid(f"The JSON body gives the key '{shown(exc.key)}' more than once.") from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        raise invalid(f"We could not parse the JSON body of your request: {shown(str(exc))}.") from None
    _check_nesting_and_strings(body, text)
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def _too_deep() -> APIError:
    return invalid(f"The JSON body is nested too deeply: at most {MAX_DEPTH} levels of arrays and objects.")


def _check_nesting_and_strings(body: Any, text: str) -> None:
    """400 for nesting deeper than MAX_DEPTH or a string holding a lone surrogate, walking only if need be."""
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(body)
    if _SURROGATE_ESCAPE.search(text) is not None:  # a pair is fine: only a lone one is refused
        where = _lone_surrogate_in(body, ())
        if where is not None:
            raise _lone_surrogate(*where)


def _check_depth(body: Any) -> None:
    # level by level, containers only: a body of millions of values is walked in a fraction of a second
    level = [body] if type(body) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise _too_deep()
        children: list[Any] = []
        for value in level:
            children.extend(value.values() if type(value) is dict else value)
        level = [child for child in children if type(child) in _CONTAINERS]


def _lone_surrogate_in(value: Any, where: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], bool] | None:
    """Where the first lone surrogate is (its path, and whether it is in a key); recursion is safe here, as
    the depth was checked first."""
    if isinstance(value, str):
        return (where, False) if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                return where, True
            found = _lone_surrogate_in(item, (*where, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate_in(item, (*where, i))
            if found is not None:
                return found
    return None


def _lone_surrogate(where: tuple[str | int, ...], in_key: bool) -> APIError:
    param = shown("".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in where).lstrip("."), 256) or None
    place = f" '{param}'" if param else ""
    where_ = f" in a key of{place or ' the body'}" if in_key else f" in{place}" if place else ""
    return invalid(f"The JSON body has a lone UTF-16 surrogate{where_}: it is not valid Unicode.",
                   None if in_key else param)
