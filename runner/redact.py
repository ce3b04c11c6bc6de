"""Secrets out of everything the runner writes or prints: each known value replaced by `<NAME>`, NAME being
the variable that holds it.

A value is replaced in every form it may take on the way: as written, with surrounding whitespace removed,
JSON-escaped, URL-encoded and Python-repr escaped. One pattern replaces them all in a single pass, longest
first, so a secret that contains another is replaced whole. Both the engine and the server use this
module: it imports nothing of either.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

# a value shorter than this is a placeholder (`ollama`, `EMPTY`, `x`), not a credential: replacing it
# would corrupt every text it appears in. Only a variable named explicitly as a secret is exempt.
MIN_SECRET_LENGTH = 8


def credible(value: str | None) -> bool:
    """Whether a value is long enough to be a credential (see MIN_SECRET_LENGTH)."""
    return bool(value) and len((value or "").strip()) >= MIN_SECRET_LENGTH


def forms(value: str) -> set[str]:
    """Every form in which `value` may appear in a text: as written, stripped, JSON-escaped (with and
    without ASCII escapes, and with `/` escaped as some servers do), URL-encoded, Python-repr escaped
    (of the string and of its UTF-8 bytes)."""
    found: set[str] = set()
    for raw in {value, value.strip()}:
        if not raw:
            continue
        escaped, unicode = json.dumps(raw)[1:-1], json.dumps(raw, ensure_ascii=False)[1:-1]
        found |= {
            raw, escaped, escaped.replace("/", "\\/"), unicode, unicode.replace("/", "\\/"),
            quote(raw), quote(raw, safe=""), quote_plus(raw),
            repr(raw)[1:-1], raw.encode("unicode_escape").decode("ascii"), repr(raw.encode("utf-8"))[2:-1],
        }
    return {form for form in found if form}


class Redactor:
    """Replaces known secret values (by the name of their variable) with `<NAME>` in texts and data."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self.secrets = dict(secrets or {})
        placeholders: dict[str, str] = {}
        # longer values first, so that of two secrets sharing a form, the one containing the other names it
        for name, value in sorted(self.secrets.items(), key=lambda item: (-len(item[1] or ""), item[0])):
            for form in forms(value or ""):
                placeholders.setdefault(form, f"<{name}>")
        ordered = sorted(placeholders, key=lambda form: (-len(form), form))  # the regex takes the first match
        self._text = placeholders
        self._bytes = {form.encode("utf-8"): name.encode("utf-8") for form, name in placeholders.items()}
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._bytes_pattern = re.compile(b"|".join(re.escape(f.encode("utf-8")) for f in ordered)) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """`text` with every secret replaced."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda match: self._text[match.group(0)], text)

    def encoded(self, data: bytes) -> bytes:
        """UTF-8 `data` with every secret replaced."""
        if self._bytes_pattern is None or not data:
            return data
        return self._bytes_pattern.sub(lambda match: self._bytes[match.group(0)], data)

    def data(self, value: Any) -> Any:
        """`value` with every secret replaced in its strings and bytes, at any depth: dicts (keys too),
        lists and tuples are copied; dataclass instances are changed in place and returned."""
        if self._pattern is None:
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            return self.encoded(bytes(value))
        if isinstance(value, dict):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(item) for item in value]
        if isinstance(value, tuple):
            return type(value)(*map(self._walk, value)) if hasattr(value, "_fields") else tuple(map(self._walk, value))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for item in dataclasses.fields(value):
                setattr(value, item.name, self._walk(getattr(value, item.name)))
            return value
        return value

    def union(self, other: Redactor) -> Redactor:
        """A redactor for the secrets of both (this one's name wins for a value both know)."""
        return Redactor({**other.secrets, **self.secrets})


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message (arguments, exception and stack included)
    with its secrets replaced; attach it to handlers, which see every record that reaches them."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drop it."""
        if not self.redact:
            return True
        # the arguments stay arguments: uvicorn's access formatter unpacks them
        record.msg = self.redact.text(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(self._argument(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: self._argument(arg) for key, arg in record.args.items()}
        if record.exc_info:
            record.exc_text = self.redact.text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact.text(record.stack_info)
        return True

    def _argument(self, arg: Any) -> Any:
        if isinstance(arg, str):
            return self.redact.text(arg)
        if arg is None or isinstance(arg, bool | int | float):
            return arg
        # an object stays itself (its format, `%d` or `%r`, still applies) unless it shows a secret
        for shown in (str(arg), repr(arg)):
            if self.redact.text(shown) != shown:
                return self.redact.text(shown)
        return arg


def redact_logs(redact: Redactor, loggers: Iterable[str] = ()) -> None:
    """Attach a RedactingFilter to every handler of the root logger, of `loggers` and of every logger that
    exists now, and to logging's last-resort handler, so nothing logged from here on shows a secret."""
    if not redact:
        return
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    existing = [item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger)]
    for logger in [*map(logging.getLogger, loggers), *existing]:
        handlers.extend(logger.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in dict.fromkeys(handlers):
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(redact))
