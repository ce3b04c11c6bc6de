"""The API's static chunking: windows of at most `max_chunk_size_tokens` tokens, consecutive windows sharing exactly
`chunk_overlap_tokens` tokens, cut at a paragraph or sentence end when one falls in a window's last quarter.

Tokens are what the offline providers count (`runner.server.providers.base.TOKEN_PATTERN`: runs of word characters
and single punctuation marks): deterministic and offline, where tiktoken would fetch its data on first use. A
chunk's text is the original text from its first token to its last, whitespace and all.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass
from typing import Any

from runner.server.providers.base import TOKEN_PATTERN

DEFAULT_MAX_TOKENS = 800  # the API's `auto` strategy
DEFAULT_OVERLAP_TOKENS = 400
MIN_MAX_TOKENS, MAX_MAX_TOKENS = 100, 4096

_PARAGRAPH = re.compile(r"\n[^\S\n]*\n")
_SENTENCE_END = frozenset(".!?;。！？；…")
_CLOSERS = frozenset("\"')]}»”’")  # what may follow a sentence's full stop and still end it: `(as he said.")`


@dataclass(frozen=True)
class Chunk:
    """One window of a file's text: its original text, its position among the file's chunks, its token count."""

    text: str
    index: int
    tokens: int


def check_chunking(max_chunk_size_tokens: int, chunk_overlap_tokens: int) -> None:
    """Raise ValueError (naming the parameter) unless the sizes are within the API's bounds: max 100..4096,
    overlap 0..max/2."""
    for name, value in (("max_chunk_size_tokens", max_chunk_size_tokens),
                        ("chunk_overlap_tokens", chunk_overlap_tokens)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
    if not MIN_MAX_TOKENS <= max_chunk_size_tokens <= MAX_MAX_TOKENS:
        raise ValueError(f"max_chunk_size_tokens must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}, "
                         f"got {max_chunk_size_tokens}")
    if chunk_overlap_tokens < 0:
        raise ValueError(f"chunk_overlap_tokens must not be negative, got {chunk_overlap_tokens}")
    if chunk_overlap_tokens > max_chunk_size_tokens / 2:
        raise ValueError(f"chunk_overlap_tokens ({chunk_overlap_tokens}) must not exceed half of "
                         f"max_chunk_size_tokens ({max_chunk_size_tokens})")


def parse_chunking_strategy(strategy: Any, param: str = "chunking_strategy") -> tuple[int, int]:
    """(max_chunk_size_tokens, chunk_overlap_tokens) from the API's ChunkingStrategyRequestParam (`None` or
    `{"type": "auto"}`: 800/400; `{"type": "static", "static": {...}}`). ValueError whose message starts with the
    offending parameter's path, e.g. "chunking_strategy.static.max_chunk_size_tokens: ..."."""
    if strategy is None:
        return DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP_TOKENS
    if not isinstance(strategy, dict):
        raise ValueError(f"{param}: must be an object")
    kind = strategy.get("type")
    if kind == "auto":
        if set(strategy) - {"type"}:
            raise ValueError(f"{param}: unknown field {sorted(set(strategy) - {'type'})[0]!r}")
        return DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP_TOKENS
    if kind != "static":
        raise ValueError(f"{param}.type: must be 'auto' or 'static'")
    if set(strategy) - {"type", "static"}:
        raise ValueError(f"{param}: unknown field {sorted(set(strategy) - {'type', 'static'})[0]!r}")
    static = strategy.get("static")
    if not isinstance(static, dict):
        raise ValueError(f"{param}.static: must be an object")
    fields = ("max_chunk_size_tokens", "chunk_overlap_tokens")
    for name in fields:
        if name not in static:
            raise ValueError(f"{param}.static.{name}: is required")
    if set(static) - set(fields):
        raise ValueError(f"{param}.static: unknown field {sorted(set(static) - set(fields))[0]!r}")
    try:
        check_chunking(static["max_chunk_size_tokens"], static["chunk_overlap_tokens"])
    except ValueError as exc:
        name = str(exc).split(" ", 1)[0]
        raise ValueError(f"{param}.static.{name if name in fields else fields[1]}: {exc}") from None
    return static["max_chunk_size_tokens"], static["chunk_overlap_tokens"]


def chunking_strategy_object(max_chunk_size_tokens: int, chunk_overlap_tokens: int) -> dict[str, Any]:
    """The `chunking_strategy` a vector store file reports (the API shows `auto` as the static sizes it used)."""
    return {"type": "static", "static": {"max_chunk_size_tokens": max_chunk_size_tokens,
                                         "chunk_overlap_tokens": chunk_overlap_tokens}}


def chunk_text(text: str, max_chunk_size_tokens: int = DEFAULT_MAX_TOKENS,
               chunk_overlap_tokens: int = DEFAULT_OVERLAP_TOKENS) -> list[Chunk]:
    """Cut text into overlapping windows of tokens (see the module's docstring); [] for text without tokens.

    Every token is in at least one chunk; each chunk has at most `max_chunk_size_tokens` tokens and shares exactly
    `chunk_overlap_tokens` with the next. A chunk ends where a paragraph or sentence ends if such an end falls in
    the last quarter of its window (a paragraph end preferred), else at the window's end. Deterministic, linear
    in the text's length. ValueError for sizes outside the API's bounds.
    """
    check_chunking(max_chunk_size_tokens, chunk_overlap_tokens)
    starts, ends = array("q"), array("q")  # 16 bytes a token: a list of match objects would be ~10x that
    for match in TOKEN_PATTERN.finditer(text):
        starts.append(match.start())
        ends.append(match.end())
    count = len(starts)
    chunks: list[Chunk] = []
    first = 0
    while first < count:
        limit = first + max_chunk_size_tokens
        if limit >= count:
            last = count
        else:  # at least overlap + 1 tokens, so the next window starts further on
            lowest = first + max(chunk_overlap_tokens + 1, max_chunk_size_tokens - max_chunk_size_tokens // 4)
            last = _cut(text, starts, ends, lowest, limit)
        chunks.append(Chunk(text[starts[first]:ends[last - 1]], len(chunks), last - first))
        if last >= count:
            break
        first = last - chunk_overlap_tokens  # last > first + overlap: always moves on
    return chunks


def _cut(text: str, starts: array[int], ends: array[int], lowest: int, limit: int) -> int:
    """Where to end a window [first, limit) of tokens: after the latest paragraph end in [lowest, limit], else the
    latest sentence end there, else at limit. Returns the index one past the chunk's last token."""
    sentence = 0
    for last in range(limit, lowest - 1, -1):
        gap = text[ends[last - 1]:starts[last]]  # what lies between the chunk's last token and the next
        if "\n" in gap and _PARAGRAPH.search(gap):
            return last
        if not sentence and gap and _ends_sentence(text, starts, ends, last - 1):
            sentence = last
    return sentence or limit


def _ends_sentence(text: str, starts: array[int], ends: array[int], index: int) -> bool:
    """Whether token `index` closes a sentence: a full stop (or ! ? ; …), maybe followed by quotes or brackets."""
    for _ in range(3):  # `.")` at most: a bound keeps a run of thousands of quotes linear
        if index < 0 or ends[index] - starts[index] != 1 or text[starts[index]] not in _CLOSERS:
            break
        index -= 1
    return index >= 0 and ends[index] - starts[index] == 1 and text[starts[index]] in _SENTENCE_END
