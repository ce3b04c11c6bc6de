"""Reading a request's JSON body without trusting it: a size limit, strict UTF-8 and JSON, a nesting limit.

Every route reads its body here, so what a hostile client sends is refused with a 4xx in the API's error
shape before any route sees it: a body over `MAX_BODY_BYTES` (413, checked from Content-Length before
reading and counted while reading a chunked body), bytes that are not UTF-8, JSON that is not strict
(NaN, Infinity, numbers that overflow, a key given twice), nesting deeper than `MAX_DEPTH`, strings with
a lone UTF-16 surrogate (no encoder can write them back), and bodies that are not one JSON object.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request

from runner.server.errors import APIError, invalid

# 8 MiB: an assistant at the API's own limits (256,000 characters of instructions, each escaped as
# \uXXXX, plus 128 tools) is under 2 MiB; json.loads parses 8 MiB in well under a second
MAX_BODY_BYTES = 8 * 1024 * 1024

# 64 nested arrays and objects: a request's deepest part, a function's JSON Schema, needs a dozen or two;
# far below Python's recursion limit, which json, pydantic and the encoders would otherwise hit
MAX_DEPTH = 64

_DIGITS = re.compile(r"[0-9]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how a surrogate can reach a strictly decoded body
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPES = ("application/json",)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def too_large(detail: str) -> APIError:
    """413 for a body over the limit; the connection is closed, as the rest of the body is never read."""
    return APIError(413, f"{detail} The maximum request body size is {MAX_BODY_BYTES} bytes "
                         f"({MAX_BODY_BYTES // (1024 * 1024)} MiB).",
                    code="request_too_large", headers={"connection": "close"})


async def read_bytes(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, or a 413 as soon as it is known to be over `limit` bytes (the rest stays unread)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not _DIGITS.fullmatch(declared):
            raise invalid("The Content-Length header is not a number of bytes.")
        if len(declared) > 15 or int(declared) > limit:
            raise too_large(f"Your request body is {_shown(declared, 20)} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked, or longer than it said: stop reading here
            raise too_large("Your request body is larger than that.")
        chunks.append(chunk)
    return b"".join(chunks)


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
        shown = request.headers["content-type"][:100]
        raise invalid(f"Unsupported content type: '{shown}'. This API method only accepts 'application/json' "
                      f"requests, but you specified the header 'Content-Type: {shown}'. Please try again with "
                      "a supported content type.")
    return parse_object(raw)


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


def parse_object(raw: bytes) -> dict[str, Any]:
    """`raw` parsed as one strict JSON object; a 400 saying what is wrong when it is not one."""
    try:
        text = raw.decode("utf-8")  # strict: json.loads(bytes) would let encoded surrogates through
    except UnicodeDecodeError as exc:
        raise invalid(f"The request body is not valid UTF-8 (at byte {exc.start}).") from None
    try:
        body = json.loads(text, parse_float=_finite, parse_int=_integer, parse_constant=_constant,
                           object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise invalid(f"The JSON body gives the key '{_shown(exc.key)}' more than once.") from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        raise invalid(f"We could not parse the JSON body of your request: {_shown(str(exc))}.") from None
    _check_nesting_and_strings(body, text)
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def _too_deep() -> APIError:
    return invalid(f"The JSON body is nested too deeply: at most {MAX_DEPTH} levels of arrays and objects.")


def _shown(text: str, limit: int = 100) -> str:
    text = _SURROGATE.sub("\ufffd", text)
    return text if len(text) <= limit else text[:limit] + "…"


def _check_nesting_and_strings(body: Any, text: str) -> None:
    """400 for nesting deeper than MAX_DEPTH or a string holding a lone surrogate, walking only if need be."""
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(text) is not None  # a pair is fine: only a lone one fails the walk
    if not (deep or surrogates):
        return
    # where a value is, as (key or index, where its parent is): spelled out only for an error
    stack: list[tuple[Any, int, _Where]] = [(body, 1, None)]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise _too_deep()
            for key, item in value.items():
                if surrogates and _SURROGATE.search(key):
                    raise _lone_surrogate(where, key=True)
                stack.append((item, depth + 1, (key, where)))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise _too_deep()
            stack.extend((item, depth + 1, (i, where)) for i, item in enumerate(value))
        elif surrogates and isinstance(value, str) and _SURROGATE.search(value):
            raise _lone_surrogate(where)


_Where = tuple[Any, Any] | None


def _param(where: _Where) -> str:
    parts: list[str] = []
    while where is not None:
        step, where = where
        parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return "".join(reversed(parts)).lstrip(".")


def _lone_surrogate(where: _Where, *, key: bool = False) -> APIError:
    param = _shown(_param(where), 256) or None
    place = f" '{param}'" if param else ""
    shown = f" in a key of{place or ' the body'}" if key else f" in{place}" if place else ""
    return invalid(f"The JSON body has a lone UTF-16 surrogate{shown}: it is not valid Unicode.",
                   None if key else param)
