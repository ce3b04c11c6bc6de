"""file_search's chunking: the API's bounds, exact overlaps, every token covered, cuts at paragraph and sentence
ends, determinism and linear time."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.server.providers.base import TOKEN_PATTERN, count_tokens
from runner.server.tools.file_search.chunking import (
    Chunk,
    check_chunking,
    chunk_text,
    chunking_strategy_object,
    parse_chunking_strategy,
)


def tokens(text: str) -> list[str]:
    return TOKEN_PATTERN.findall(text)


def assert_windows(text: str, chunks: list[Chunk], max_tokens: int, overlap: int) -> None:
    """Each chunk within bounds and a slice of the text; consecutive ones share exactly `overlap` tokens; and
    the chunks, their overlaps taken out, are the text's tokens exactly (every token covered, in order)."""
    rebuilt: list[str] = []
    position = 0
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert 0 < chunk.tokens <= max_tokens
        assert chunk.tokens == count_tokens(chunk.text)
        found = text.find(chunk.text, position)
        assert found >= 0, "a chunk is the original text, whitespace and all"
        position = found
        own = tokens(chunk.text)
        if i:
            assert own[:overlap] == rebuilt[len(rebuilt) - overlap:]
            own = own[overlap:]
        rebuilt.extend(own)
    assert rebuilt == tokens(text)


def prose(seed: int, paragraphs: int) -> str:
    rng = random.Random(seed)
    words = ["the", "a", "river", "stone", "quickly", "runs", "over", "green", "hills", "while", "birds", "sing", "of", "old", "times", "and", "new"]
    out = []
    for _ in range(paragraphs):
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 18))).capitalize()
                     + rng.choice([".", "!", "?", ".\"", ")."]) for _ in range(rng.randint(1, 6))]
        out.append(" ".join(sentences))
    return "\n\n".join(out)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(800, 400), (100, 50), (100, 0), (4096, 2048), (137, 11)])
def test_windows_respect_the_sizes_and_cover_every_token(max_tokens: int, overlap: int) -> None:
    text = prose(1, 400)
    chunks = chunk_text(text, max_tokens, overlap)
    assert len(chunks) > 1
    assert_windows(text, chunks, max_tokens, overlap)


def test_the_defaults_are_the_auto_strategy() -> None:
    text = prose(2, 300)
    assert chunk_text(text) == chunk_text(text, 800, 400)
    assert parse_chunking_strategy(None) == parse_chunking_strategy({"type": "auto"}) == (800, 400)


def test_a_short_text_is_one_chunk_of_its_own_text() -> None:
    assert chunk_text("  Hello, world!\n") == [Chunk("Hello, world!", 0, 4)]


@pytest.mark.parametrize("text", ["", "   \n\t  ", "\n\n\n"])
def test_text_without_tokens_has_no_chunks(text: str) -> None:
    assert chunk_text(text) == []


def test_a_chunk_ends_at_a_paragraph_end_in_its_last_quarter() -> None:
    para = " ".join(["word"] * 89) + "."  # 90 tokens
    text = "\n\n".join([para] * 5)
    chunks = chunk_text(text, 100, 20)
    assert chunks[0].text == para  # cut at the blank line after 90 tokens, not at 100 mid-paragraph
    assert chunks[0].tokens == 90
    assert_windows(text, chunks, 100, 20)


def test_a_chunk_ends_at_a_sentence_end_when_no_paragraph_ends_in_reach() -> None:
    sentence = " ".join(["word"] * 19) + "."  # 20 tokens
    text = " ".join([sentence] * 30)
    chunks = chunk_text(text, 110, 10)
    assert chunks[0].tokens == 100 and chunks[0].text.endswith("word.")
    assert all(c.text.endswith(".") for c in chunks[:-1])
    sentence_in_quotes = " ".join(["word"] * 17) + ".\")"
    chunks = chunk_text(" ".join([sentence_in_quotes] * 30), 110, 10)
    assert chunks[0].text.endswith(".\")")


def test_without_boundaries_a_chunk_is_cut_at_the_maximum() -> None:
    text = " ".join(f"w{i}" for i in range(1000))
    chunks = chunk_text(text, 100, 50)
    assert [c.tokens for c in chunks[:-1]] == [100] * (len(chunks) - 1)
    assert chunks[1].text.startswith("w50 ")
    assert_windows(text, chunks, 100, 50)


def test_chunking_is_deterministic() -> None:
    text = prose(3, 200)
    assert chunk_text(text, 200, 100) == chunk_text(text, 200, 100)


def test_unicode_and_punctuation_count_as_tokens_the_offline_way() -> None:
    text = "\u4f60\u597d\u4e16\u754c\uff01 caf\u00e9 na\u00efve -- x+y=z. " * 200
    chunks = chunk_text(text, 100, 30)
    assert_windows(text, chunks, 100, 30)


def test_huge_input_is_chunked_in_bounded_time() -> None:
    text = prose(4, 2000)
    text = (text + "\n\n") * max(1, 5_000_000 // len(text))  # ~5 MB
    start = time.perf_counter()
    chunks = chunk_text(text)
    assert time.perf_counter() - start < 10.0
    assert chunks[-1].text.endswith(text.rstrip()[-20:])


def test_pathological_runs_are_linear() -> None:
    for text in ('"' * 300_000, "." * 300_000, "\n\n".join("x" * 300_000), "a " * 300_000):
        start = time.perf_counter()
        chunks = chunk_text(text, 100, 50)
        assert time.perf_counter() - start < 10.0
        assert chunks


@pytest.mark.parametrize(("max_tokens", "overlap", "message"), [
    (99, 0, "max_chunk_size_tokens must be between 100 and 4096, got 99"),
    (4097, 0, "max_chunk_size_tokens must be between 100 and 4096, got 4097"),
    (100, 51, "chunk_overlap_tokens (51) must not exceed half of max_chunk_size_tokens (100)"),
    (100, -1, "chunk_overlap_tokens must not be negative, got -1"),
    (100.0, 0, "max_chunk_size_tokens must be an integer"),
    (True, 0, "max_chunk_size_tokens must be an integer"),
])
def test_sizes_outside_the_api_bounds_are_refused(max_tokens: int, overlap: int, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_chunking(max_tokens, overlap)
    assert str(caught.value) == message
    with pytest.raises(ValueError):
        chunk_text("some text", max_tokens, overlap)


def test_parse_chunking_strategy_names_the_parameter_at_fault() -> None:
    static = {"type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 100}}
    assert parse_chunking_strategy(static) == (300, 100)
    assert chunking_strategy_object(300, 100) == static
    cases = [
        ("auto", "chunking_strategy: must be an object"),
        ({"type": "dynamic"}, "chunking_strategy.type: must be 'auto' or 'static'"),
        ({"type": "auto", "static": {}}, "chunking_strategy: unknown field 'static'"),
        ({"type": "static"}, "chunking_strategy.static: must be an object"),
        ({"type": "static", "static": {"max_chunk_size_tokens": 300}},
         "chunking_strategy.static.chunk_overlap_tokens: is required"),
        ({"type": "static", "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 10}},
         "chunking_strategy.static.max_chunk_size_tokens: max_chunk_size_tokens must be between 100 and 4096, got 50"),
        ({"type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 200}},
         "chunking_strategy.static.chunk_overlap_tokens: chunk_overlap_tokens (200) must not exceed half of "
         "max_chunk_size_tokens (300)"),
        ({"type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 1, "x": 1}},
         "chunking_strategy.static: unknown field 'x'"),
    ]
    for strategy, message in cases:
        with pytest.raises(ValueError) as caught:
            parse_chunking_strategy(strategy)
        assert str(caught.value) == message


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab .!?\n\"')\u00e9\u4f60")), max_size=3000),
       max_tokens=st.integers(min_value=100, max_value=300), share=st.floats(min_value=0.0, max_value=0.5))
def test_any_text_makes_valid_windows(text: str, max_tokens: int, share: float) -> None:
    overlap = int(max_tokens * share)
    assert_windows(text, chunk_text(text, max_tokens, overlap), max_tokens, overlap)
