"""file_search's index: chunks in the backend's SQLite database, keyword (FTS5 bm25) and hybrid search, scores,
thresholds, file filters, hostile queries, the Store's transactions, and recall on the labelled set."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.server.store import Store
from runner.server.tools.file_search import (
    Chunk,
    SearchHit,
    SearchIndex,
    chunk_text,
    extract_text,
    matches,
)
from runner.server.tools.file_search.index import MAX_QUERY_TERMS, fuse, query_terms

DATA = Path(__file__).parent / "data" / "retrieval"

DOCS = {
    "file_cats": "Cats are small carnivorous mammals. A cat sleeps most of the day and hunts mice at night.",
    "file_dogs": "Dogs are loyal companions. A dog needs a daily walk, and running in the park keeps it fit.",
    "file_tea": "Green tea is steamed or pan-fired soon after picking, so the leaves do not oxidize.",
    "file_cafe": "The caf\u00e9 on the corner serves cr\u00e8me br\u00fbl\u00e9e and strong espresso.",
    "file_rust": "Rust's borrow checker enforces ownership rules at compile time, preventing data races.",
}


def new_index(**kwargs: Any) -> SearchIndex:
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    return SearchIndex(db, threading.RLock(), **kwargs)


@pytest.fixture
def index() -> SearchIndex:
    built = new_index()
    for file_id, text in DOCS.items():
        built.add_file("vs_a", file_id, chunk_text(text))
    return built


def files(hits: list[SearchHit]) -> list[str]:
    return [hit.file_id for hit in hits]


def test_the_matching_file_comes_first(index: SearchIndex) -> None:
    assert files(index.search(["vs_a"], "Which animal hunts mice?"))[0] == "file_cats"
    assert files(index.search(["vs_a"], "ownership and the borrow checker"))[0] == "file_rust"
    hit = index.search(["vs_a"], "green tea leaves")[0]
    assert hit == SearchHit("vs_a", "file_tea", hit.score, DOCS["file_tea"], 0)


def test_stems_and_diacritics_match(index: SearchIndex) -> None:
    assert files(index.search(["vs_a"], "runs"))[0] == "file_dogs"  # porter: running ~ runs
    assert files(index.search(["vs_a"], "oxidation"))[0] == "file_tea"
    assert files(index.search(["vs_a"], "cafe creme brulee")) == ["file_cafe"]


def test_the_unicode61_tokenizer_has_no_stemming() -> None:
    plain = new_index(tokenizer="unicode61")
    plain.add_file("vs", "f", chunk_text(DOCS["file_dogs"]))
    assert plain.search(["vs"], "runs") == []
    assert files(plain.search(["vs"], "running")) == ["f"]
    with pytest.raises(ValueError, match="unknown tokenizer 'snowball'"):
        new_index(tokenizer="snowball")


def test_scores_lie_in_0_1_best_first(index: SearchIndex) -> None:
    hits = index.search(["vs_a"], "a cat and a dog walk in the park at night", max_num_results=10)
    assert len(hits) >= 2
    assert all(0.0 < hit.score < 1.0 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_the_score_scale_is_anchored_on_the_query_weight() -> None:
    # equal-length chunks, each query term once: bm25 equals the query's weight, so 1 - 4^-1
    built = new_index()
    filler = [f"alpha{i} beta{i} gamma{i} delta{i}" for i in range(8)]
    filler[0] = "apple banana gamma0 delta0"
    filler[1] = "apple beta1 gamma1 delta1"
    filler[2] = "kiwi beta2 gamma2 delta2"
    for i, text in enumerate(filler):
        built.add_file("vs", f"f{i}", [Chunk(text, 0, 4)])
    scores = {hit.file_id: hit.score for hit in built.search(["vs"], "apple banana")}
    assert scores["f0"] == pytest.approx(0.75, abs=1e-9)  # every term once
    half = {hit.file_id: hit.score for hit in built.search(["vs"], "banana kiwi")}  # terms of equal idf
    assert half["f0"] == pytest.approx(0.5, abs=1e-9) and half["f2"] == pytest.approx(0.5, abs=1e-9)
    # a term no chunk holds is left out of the weight: it tells no chunk apart
    assert {h.file_id: h.score for h in built.search(["vs"], "apple banana zzzunknown")}["f0"] == pytest.approx(0.75)


def test_score_threshold_drops_weak_hits(index: SearchIndex) -> None:
    everything = index.search(["vs_a"], "cat dog tea rust", max_num_results=10)
    assert len(everything) == 4
    cut = sorted(hit.score for hit in everything)[1]
    kept = index.search(["vs_a"], "cat dog tea rust", max_num_results=10, score_threshold=cut)
    assert kept == [hit for hit in everything if hit.score >= cut]
    assert index.search(["vs_a"], "cat dog tea rust", score_threshold=1.0) == []


def test_max_num_results(index: SearchIndex) -> None:
    assert len(index.search(["vs_a"], "a the is and of", max_num_results=2)) == 2
    with pytest.raises(ValueError, match="max_num_results must be at least 1"):
        index.search(["vs_a"], "cat", max_num_results=0)


def test_allowed_files_applies_attribute_filters_once_per_file(index: SearchIndex) -> None:
    attributes = {"file_cats": {"kind": "pet"}, "file_dogs": {"kind": "pet"}, "file_tea": {"kind": "drink"}}
    flt = {"type": "eq", "key": "kind", "value": "pet"}
    asked: list[tuple[str, str]] = []

    def allowed(vector_store_id: str, file_id: str) -> bool:
        asked.append((vector_store_id, file_id))
        return matches(flt, attributes.get(file_id, {}))

    index.add_file("vs_a", "file_cats_2", chunk_text("Another cat text. " * 300, 100, 50))  # many chunks, one file
    hits = index.search(["vs_a"], "cat dog tea", max_num_results=50, allowed_files=allowed)
    assert set(files(hits)) == {"file_cats", "file_dogs"}
    assert len(asked) == len(set(asked))


def test_stores_are_searched_only_when_asked(index: SearchIndex) -> None:
    index.add_file("vs_b", "file_b", chunk_text("A cat in another store."))
    assert set(files(index.search(["vs_a"], "cat"))) == {"file_cats"}
    assert set(files(index.search(["vs_b"], "cat"))) == {"file_b"}
    assert {(h.vector_store_id, h.file_id) for h in index.search(["vs_a", "vs_b"], "cat")} == {
        ("vs_a", "file_cats"), ("vs_b", "file_b")}
    assert index.search([], "cat") == []
    assert index.search(["vs_missing"], "cat") == []


def test_file_chunks_bytes_replace_and_remove() -> None:
    built = new_index()
    text = " ".join(f"word{i}." for i in range(500))
    chunks = chunk_text(text, 100, 50)
    stored = built.add_file("vs", "f", chunks)
    assert stored == sum(len(c.text.encode("utf-8")) for c in chunks) == built.store_bytes("vs")
    assert built.file_chunks("vs", "f") == [c.text for c in chunks]
    assert built.add_file("vs", "f", chunk_text("caf\u00e9 only")) == len("caf\u00e9 only".encode())  # replaced
    assert built.file_chunks("vs", "f") == ["caf\u00e9 only"]
    assert built.search(["vs"], "word7") == []
    built.add_file("vs", "g", chunk_text("cafe again"))
    built.remove_file("vs", "f")
    assert built.file_chunks("vs", "f") == [] and files(built.search(["vs"], "cafe")) == ["g"]
    built.remove_file("vs", "never-added")
    built.add_file("vs2", "g", chunk_text("cafe elsewhere"))
    built.remove_store("vs")
    assert built.store_bytes("vs") == 0 and built.search(["vs"], "cafe") == []
    assert files(built.search(["vs2"], "cafe")) == ["g"]
    # the full-text index follows the chunks table: nothing left of the removed rows
    db = built._db
    assert db.execute("SELECT count(*) FROM file_search_fts WHERE file_search_fts MATCH 'cafe'").fetchone()[0] == 1
    db.execute("INSERT INTO file_search_fts (file_search_fts) VALUES ('integrity-check')")
    assert built.add_file("vs", "empty", []) == 0


HOSTILE = ['"', '""', "'", "*", "NEAR(", "NEAR(a b", "AND OR", "OR", "NOT", "a AND", "(", ")", "^", "-", ":",
           "col:cat", "{a b}:cat", "cat*", "\\", "\x00", "'; DROP TABLE file_search_chunks; --", "\u202e\u0000",
           "\ud800", "cat\ud800dog", "\u0301", "_", "__init__", "\u4f60\u597d", "\U0001f600 cat", " ", ""]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(index: SearchIndex, query: str) -> None:
    hits = index.search(["vs_a"], query)
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)
    assert files(index.search(["vs_a"], f"{query} cat {query}"))[:1] == ["file_cats"]


def test_queries_without_words_find_nothing(index: SearchIndex) -> None:
    for query in ("", "   ", "?!", '"*"', "\u00b7"):
        assert index.search(["vs_a"], query) == []


def test_a_10000_character_query_is_bounded(index: SearchIndex) -> None:
    query = " ".join(f"term{i}" for i in range(2000)) + " cat"
    assert len(query) > 10_000
    assert len(query_terms(query)) == MAX_QUERY_TERMS
    assert index.search(["vs_a"], query) == []  # "cat" is past the first 64 distinct words
    assert files(index.search(["vs_a"], "cat " + query)) == ["file_cats"]
    assert files(index.search(["vs_a"], "x" * 10_000 + " cat")) == ["file_cats"]


def test_a_list_of_queries_is_searched_as_one(index: SearchIndex) -> None:
    assert set(files(index.search(["vs_a"], ["cat", "rust borrow"]))) == {"file_cats", "file_rust"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=300))
def test_any_query_never_raises(index: SearchIndex, query: str) -> None:
    hits = index.search(["vs_a"], query, max_num_results=5)
    assert len(hits) <= 5
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.lists(st.sampled_from(['"', "*", "NEAR(", "AND", "OR", "NOT", "(", ")", ":", "^", "cat", "-", "+"]),
                      max_size=12).map(" ".join))
def test_fts5_syntax_is_only_text(index: SearchIndex, query: str) -> None:
    hits = index.search(["vs_a"], query)
    if "cat" in query.split():  # operators are words like others ("or", "not" are in file_tea's text)
        assert "file_cats" in files(hits)


# a deterministic "embedding model": each word's concept is one dimension, so synonyms land together
CONCEPTS = {"car": 0, "cars": 0, "automobile": 0, "vehicle": 0, "sedan": 0, "fruit": 1, "apple": 1, "pear": 1,
            "music": 2, "song": 2, "melody": 2, "guitar": 2}


def concept_embed(texts: list[str]) -> list[list[float]]:
    vectors = []
    for text in texts:
        vector = [0.0] * 4
        for word in query_terms(text):
            vector[CONCEPTS.get(word, 3)] += 1.0 if word in CONCEPTS else 0.1
        vectors.append(vector)
    return vectors


def hybrid_index() -> SearchIndex:
    built = new_index()
    texts = {"f_car": "A sedan with four doors and a diesel engine.", "f_fruit": "An apple a day, and a pear too.",
             "f_music": "She wrote a melody for the guitar.", "f_other": "Taxes are due in April."}
    for file_id, text in texts.items():
        chunks = chunk_text(text)
        built.add_file("vs", file_id, chunks, vectors=concept_embed([c.text for c in chunks]), model="concept")
    return built


def test_hybrid_finds_by_meaning_what_keywords_miss() -> None:
    built = hybrid_index()
    assert built.search(["vs"], "automobile") == []  # no chunk holds the word
    hits = built.search(["vs"], "automobile", embed=concept_embed, model="concept")
    assert files(hits)[:1] == ["f_car"]
    assert hits[0].score == pytest.approx(0.5)  # first of the one ranking that found anything
    both = built.search(["vs"], "apple fruit", embed=concept_embed, model="concept")
    assert files(both)[0] == "f_fruit" and both[0].score == pytest.approx(1.0)  # first by both measures
    assert all(0.0 < hit.score <= 1.0 for hit in both)
    assert built.search(["vs"], "apple fruit", embed=concept_embed, model="concept", score_threshold=0.99) == both[:1]


def test_hybrid_respects_allowed_files_and_max_results() -> None:
    built = hybrid_index()
    hits = built.search(["vs"], "song about a car", embed=concept_embed, model="concept", max_num_results=1,
                        allowed_files=lambda _, file_id: file_id != "f_music")
    assert files(hits) == ["f_car"]


def test_hybrid_over_chunks_stored_without_embeddings_keeps_keyword_scores(index: SearchIndex) -> None:
    keyword = index.search(["vs_a"], "cat")
    assert index.search(["vs_a"], "cat", embed=concept_embed, model="concept") == keyword


def test_vectors_of_another_size_are_not_compared() -> None:
    built = hybrid_index()
    wide = lambda texts: [[*v, 0.0, 0.0] for v in concept_embed(texts)]  # noqa: E731
    assert built.search(["vs"], "automobile", embed=wide, model="concept") == []


def test_vectors_of_another_model_are_not_compared_and_the_store_is_named(caplog: pytest.LogCaptureFixture) -> None:
    built = hybrid_index()
    chunks = chunk_text("A vehicle for the family.")
    built.add_file("vs", "f_new", chunks, vectors=concept_embed([c.text for c in chunks]), model="concept-2")
    with caplog.at_level("WARNING", logger="runner.server"):
        hits = built.search(["vs"], "automobile", embed=concept_embed, model="concept-2")
        again = built.search(["vs"], "automobile", embed=concept_embed, model="concept-2")
    # of the same size, the old model's vectors would be compared as if they were of one space: they are not
    assert files(hits) == files(again) == ["f_new"]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["vector store vs: 4 chunk(s) were embedded by another model (concept, 4 dimensions), so a "
                        "query embedded by concept-2, 4 dimensions ranks them by keywords only; add their files "
                        "to the store again to embed them with this model"]  # once, not at every search
    assert built._db.execute("SELECT DISTINCT embedding_model FROM file_search_chunks ORDER BY 1").fetchall() == [
        ("concept",), ("concept-2",)]


def test_chunks_without_embeddings_are_ranked_by_keywords_and_said_so(index: SearchIndex,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="runner.server"):
        index.search(["vs_a"], "cat", embed=concept_embed, model="concept")
    assert "vector store vs_a: 5 chunk(s) have no embeddings" in caplog.text


def test_an_index_made_before_models_were_recorded_gains_the_column() -> None:
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    db.execute("CREATE TABLE file_search_chunks (id INTEGER PRIMARY KEY, vector_store_id TEXT NOT NULL, "
               "file_id TEXT NOT NULL, chunk_index INTEGER NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL, "
               "embedding BLOB, UNIQUE (vector_store_id, file_id, chunk_index))")
    built = SearchIndex(db, threading.RLock())
    built.add_file("vs", "f", [Chunk("a car", 0, 2)], vectors=[[1.0, 0.0]], model="m")
    assert db.execute("SELECT embedding_model FROM file_search_chunks").fetchall() == [("m",)]


def test_embeddings_are_float32_unit_vectors() -> None:
    built = new_index()
    stored = built.add_file("vs", "f", [Chunk(f"chunk {i}", i, 2) for i in range(130)],
                            vectors=[[3.0, 4.0]] * 130, model="m")
    assert stored == sum(len(f"chunk {i}") + 8 for i in range(130))
    blob = built._db.execute("SELECT embedding FROM file_search_chunks LIMIT 1").fetchone()[0]
    assert blob == bytes.fromhex("9a99193fcdcc4c3f")  # 0.6, 0.8 as little-endian float32


@pytest.mark.parametrize(("embed", "message"), [
    (lambda texts: [], "the embedder returned 0 vectors for 1 texts"),
    (lambda texts: [[1.0], [1.0, 2.0]][:len(texts)] + [[1.0, 2.0]] * (len(texts) - 2),
     "the embedder returned vectors of different or no size"),
    (lambda texts: [[float("nan")] for _ in texts], "the embedder returned a vector that is not finite"),
])
def test_a_broken_embedder_is_a_value_error(embed: Any, message: str) -> None:
    built = new_index()
    chunks = chunk_text("one. " * 200, 100, 0) if "different" in message else chunk_text("one")
    with pytest.raises(ValueError, match=message):
        built.add_file("vs", "f", chunks, vectors=embed([c.text for c in chunks]), model="m")
    assert built.file_chunks("vs", "f") == []
    if "different" not in message:  # a query is one text: its one vector has one size
        built.add_file("vs", "f", chunk_text("one"))
        with pytest.raises(ValueError, match=message):
            built.search(["vs"], "one", embed=embed, model="m")


def test_vectors_and_embed_need_their_models_name() -> None:
    built = new_index()
    with pytest.raises(ValueError, match="name of the model"):
        built.add_file("vs", "f", [Chunk("a", 0, 1)], vectors=[[1.0]])
    with pytest.raises(ValueError, match="name of its model"):
        built.search(["vs"], "a", embed=concept_embed)


def test_fuse_is_reciprocal_rank_fusion_rescaled() -> None:
    fused = dict(fuse([[1, 2, 3], [3, 1]]))
    best = 2 / 61
    assert fused[1] == pytest.approx((1 / 61 + 1 / 62) / best)
    assert fused[3] == pytest.approx((1 / 63 + 1 / 61) / best)
    assert fused[2] == pytest.approx((1 / 62) / best)
    assert [item for item, _ in fuse([[1, 2, 3], [3, 1]])] == [1, 3, 2]
    assert fuse([[5], []]) == [(5, 0.5)]
    assert fuse([[], []]) == []


def test_the_store_connection_and_its_transactions(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "backend.sqlite3"))
    built = SearchIndex(store._db, store._lock)
    with pytest.raises(RuntimeError), store.transaction():
        built.add_file("vs", "f", chunk_text("rolled back with the store's own writes"))
        raise RuntimeError
    assert built.file_chunks("vs", "f") == []
    with store.transaction():
        SearchIndex(store._db, store._lock)  # creating the tables inside a transaction does not commit it
        built.add_file("vs", "f", chunk_text("kept across a restart"))
    store.close()
    reopened = Store(str(tmp_path / "backend.sqlite3"))
    assert files(SearchIndex(reopened._db, reopened._lock).search(["vs"], "restart")) == ["f"]
    reopened.close()


def test_searches_and_ingestion_from_many_threads() -> None:
    built = new_index()
    errors: list[BaseException] = []

    def ingest(n: int) -> None:
        try:
            for i in range(20):
                built.add_file("vs", f"f{n}_{i}", chunk_text(f"thread {n} document {i} about cats. " * 30, 100, 20))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def search() -> None:
        try:
            for _ in range(40):
                for hit in built.search(["vs"], "cats document"):
                    assert "cats" in hit.text
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(n,)) for n in range(3)] + [
        threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(built.search(["vs"], "cats", max_num_results=50)) == 50


def test_recall_on_the_labelled_set() -> None:
    # a regression guard for ranking: bench/retrieval_recall.py prints the figures
    built = new_index()
    for path in sorted((DATA / "docs").iterdir()):
        built.add_file("vs", path.stem, chunk_text(extract_text(path.read_bytes(), path.name)))
    questions = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))
    assert len(questions) >= 40 and len({q["doc"] for q in questions}) == len(list((DATA / "docs").iterdir()))
    at1 = sum(files(built.search(["vs"], q["question"], max_num_results=1)) == [q["doc"]] for q in questions)
    at5 = sum(q["doc"] in files(built.search(["vs"], q["question"], max_num_results=5)) for q in questions)
    assert at1 / len(questions) >= 0.9
    assert at5 / len(questions) >= 0.97


def test_in_a_large_store_terms_in_most_chunks_are_not_matched(monkeypatch: pytest.MonkeyPatch) -> None:
    built = new_index()
    for i in range(10):
        built.add_file("vs", f"f{i}", [Chunk(f"common words here {'rare' if i == 3 else 'plain'}", 0, 4)])
    assert len(built.search(["vs"], "common rare")) == 10  # a small store: every match is listed
    monkeypatch.setattr("runner.server.tools.file_search.index.PRUNE_HITS", 5)
    hits = built.search(["vs"], "common rare")
    assert files(hits) == ["f3"]  # "common" would add ~0 to any score: its 10 rows are not scored
    assert len(built.search(["vs"], "common")) == 10  # floored terms alone: matched all the same


def test_the_nearest_vectors_are_the_same_with_numpy_and_without(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import random

    from runner.server.tools.file_search.index import _nearest, _pack, _unit

    if importlib.util.find_spec("numpy") is None:  # _nearest imports it, one-threaded
        pytest.skip("numpy is not installed")
    rng = random.Random(7)
    vectors = [[rng.uniform(-1, 1) for _ in range(16)] for _ in range(300)]
    vectors += [vectors[5]] * 3  # ties: the older chunk comes first
    ids = list(range(1, len(vectors) + 1))
    blobs = [_pack(v) for v in vectors]
    query = _unit(vectors[5])
    with_numpy = _nearest(ids, blobs, query, 10)
    real_import = builtins.__import__

    def no_numpy(name: str, *args: object, **kwargs: object) -> object:
        if name == "numpy":
            raise ImportError("numpy hidden by the test")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_numpy)
    without = _nearest(ids, blobs, query, 10)
    assert [i for i, _ in with_numpy] == [i for i, _ in without] and with_numpy[:4] == [(6, pytest.approx(1.0, abs=1e-5))] + [
        (n, pytest.approx(1.0, abs=1e-5)) for n in (301, 302, 303)]
    assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(with_numpy, without, strict=True))
    assert all(score > 0 for _, score in _nearest(ids, blobs, query, 1000)) and len(_nearest([], [], query, 3)) == 0
