"""Choosing which conversations run: `-k` expressions, tags, and deterministic shards.

`-k` works like pytest's: words matched (case-insensitively) against the conversation's name and spec path,
combined with `and`, `or`, `not` and parentheses. `--shard K/N` keeps the conversations whose stable hash
falls in slice K of N, so N CI machines together run the suite exactly once, whatever order they list it in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

from runner.spec.model import Spec
from runner.spec.paths import output_stem

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


class SelectionError(ValueError):
    """A `-k` expression or `--shard` value that cannot be understood."""


def keyword_matcher(expression: str) -> Callable[[str], bool]:
    """A predicate over a conversation's searchable text, from a `-k` expression."""
    tokens = _TOKEN.findall(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = tokens[position]
        position += 1
        return token

    def parse_or() -> Callable[[str], bool]:
        left = parse_and()
        while peek() == "or":
            take()
            right = parse_and()
            left = (lambda a, b: lambda text: a(text) or b(text))(left, right)
        return left

    def parse_and() -> Callable[[str], bool]:
        left = parse_not()
        while peek() == "and":
            take()
            right = parse_not()
            left = (lambda a, b: lambda text: a(text) and b(text))(left, right)
        return left

    def parse_not() -> Callable[[str], bool]:
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda text: not inner(text)
        return parse_atom()

    def parse_atom() -> Callable[[str], bool]:
        token = peek()
        if token is None:
            raise SelectionError(f"-k {expression!r}: the expression ends too early")
        take()
        if token == "(":
            inner = parse_or()
            if peek() != ")":
                raise SelectionError(f"-k {expression!r}: a ( is never closed")
            take()
            return inner
        if token in (")", "and", "or"):
            raise SelectionError(f"-k {expression!r}: unexpected {token!r}")
        word = token.casefold()
        return lambda text: word in text

    if not tokens:
        raise SelectionError("-k needs an expression")
    matcher = parse_or()
    if peek() is not None:
        raise SelectionError(f"-k {expression!r}: unexpected {peek()!r}")
    return lambda text: matcher(text.casefold())


def parse_shard(value: str) -> tuple[int, int]:
    """`K/N` with 1 <= K <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise SelectionError(f"--shard {value!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def shard_of(spec: Spec, shards: int) -> int:
    """The 1-based shard a conversation belongs to: a hash of its path, the same on every machine."""
    digest = hashlib.sha256(output_stem(spec.file, spec.case).as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


def select(specs: Sequence[Spec], *, keyword: str | None = None, tags: Sequence[str] = (),
           shard: tuple[int, int] | None = None) -> list[Spec]:
    """The conversations to run, in their original order."""
    matcher = keyword_matcher(keyword) if keyword else None
    chosen = []
    for spec in specs:
        if matcher is not None and not matcher(f"{spec.label} {spec.file}"):
            continue
        if tags and not set(tags) & set(spec.tags):
            continue
        if shard is not None and shard_of(spec, shard[1]) != shard[0]:
            continue
        chosen.append(spec)
    return chosen
