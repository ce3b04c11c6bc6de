"""The chunks of every vector store's files in the backend's SQLite database, searched by keywords (FTS5 bm25) and,
when an embedder is given, by meaning too (cosine similarity, fused with the keyword ranking by reciprocal rank).

Scores, 0..1:

* keyword: a chunk's bm25 divided by the bm25 an average-length chunk containing each of the query's terms once
  would get (the sum of their idf: the query's "weight"), mapped by 1 - 4^-r. So a chunk of average length that
  holds every query term once scores 0.75, one that holds terms worth half the query's weight 0.5, and repeated
  terms push towards 1. Terms that no chunk contains are left out of the weight (they tell no chunk apart: a
  stop word absent from a small store, a typo). The idf is FTS5's, over the whole table (every store).
* hybrid (`embed` given): reciprocal rank fusion, sum over the keyword and the semantic ranking of 1/(60 + rank),
  divided by its best value, so 1.0 means "first by both measures" and a chunk first by one and unseen by the
  other scores 0.5. (When no chunk searched has an embedding, the keyword scores stand.)

Each chunk's vector is stored with the name of the model that made it. A query is compared only with vectors of
its own model and size: a chunk embedded by another model (or by none) is ranked by its keywords alone, and a
warning says which store holds such chunks, once per store and model.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import operator
import os
import re
import sqlite3
import sys
import threading
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runner.server.store import immediate_transaction
from runner.server.tools.file_search.chunking import Chunk

Embed = Callable[[list[str]], list[list[float]]]
_log = logging.getLogger("runner.server")

TOKENIZERS = {
    "porter": "porter unicode61 remove_diacritics 2",  # English stemming: "running" finds "run"
    "unicode61": "unicode61 remove_diacritics 2",
}
DEFAULT_TOKENIZER = "porter"  # the better recall on tests/data/retrieval (bench/retrieval_recall.py: see BENCHMARKS.md)
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al.), what every hybrid search uses
MAX_QUERY_TERMS = 64  # a pasted page as a query: its first 64 distinct words say what it is about
PRUNE_HITS = 1000  # a term in over half the chunks is left out of MATCH only past this many: see _weigh
_WORD = re.compile(r"\w+")
_SCORE_BASE = math.log(4.0)  # score = 1 - 4^-r: 0.75 for the "every term once" chunk


@dataclass(frozen=True)
class SearchHit:
    """One chunk found: where it is, how well it matches (0..1), its text."""

    vector_store_id: str
    file_id: str
    score: float
    text: str
    chunk_index: int


class SearchIndex:
    """Chunks and their full-text index in the backend's own database (the Store's connection and lock)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock, *, tokenizer: str = DEFAULT_TOKENIZER) -> None:
        """Create the tables if they are not there (`tokenizer`: a key of TOKENIZERS; it applies when the tables
        are created: an existing index keeps the tokenizer it was made with)."""
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}: one of {', '.join(TOKENIZERS)}")
        self._db = db
        self._lock = lock
        statements = [
            """CREATE TABLE IF NOT EXISTS file_search_chunks (
                id INTEGER PRIMARY KEY,
                vector_store_id TEXT NOT NULL,
                file_id TEXT NOT NULL,
                chunk_index INTEGER NOT NULL,
                text TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                embedding BLOB,
                embedding_model TEXT,
                UNIQUE (vector_store_id, file_id, chunk_index)
            )""",
            # external content: the text is stored once, in file_search_chunks; the triggers keep the index in step
            f"""CREATE VIRTUAL TABLE IF NOT EXISTS file_search_fts USING fts5(
                text, content='file_search_chunks', content_rowid='id', tokenize='{TOKENIZERS[tokenizer]}')""",
            """CREATE TRIGGER IF NOT EXISTS file_search_chunks_added AFTER INSERT ON file_search_chunks BEGIN
                INSERT INTO file_search_fts (rowid, text) VALUES (new.id, new.text);
            END""",
            """CREATE TRIGGER IF NOT EXISTS file_search_chunks_removed AFTER DELETE ON file_search_chunks BEGIN
                INSERT INTO file_search_fts (file_search_fts, rowid, text) VALUES ('delete', old.id, old.text);
            END""",
        ]
        # one statement at a time: executescript would commit a transaction the caller has open
        with self._transaction():
            for statement in statements:
                self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(file_search_chunks)")}
            if "embedding_model" not in columns:  # a database made before models were recorded
                self._db.execute("ALTER TABLE file_search_chunks ADD COLUMN embedding_model TEXT")
        self._warned: set[tuple[str, str | None, str]] = set()  # (store, its chunks' model, the query's) said once

    def _transaction(self) -> contextlib.AbstractContextManager[bool]:
        """The Store's transaction discipline on its connection (joins one the Store has open)."""
        return immediate_transaction(self._db, self._lock)

    def add_file(self, vector_store_id: str, file_id: str, chunks: list[Chunk], *,
                 vectors: Sequence[Sequence[float]] | None = None, model: str | None = None) -> int:
        """Index a file's chunks (replacing any it had in this store); with `vectors` (one per chunk, made by the
        embedding model `model`), store each chunk's embedding and its model too. Returns the bytes stored: the
        chunks' UTF-8 text plus 4 per embedding dimension. ValueError for vectors that are not one per chunk, all of
        one size and finite."""
        packed: list[bytes | None] = [None] * len(chunks)
        if vectors is not None:
            if not model:
                raise ValueError("vectors need the name of the model that made them")
            packed = [_pack(vector) for vector in check_vectors(vectors, len(chunks))]
        stored_model = model if vectors is not None and chunks else None
        rows = [(vector_store_id, file_id, chunk.index, chunk.text, chunk.tokens, vector, stored_model)
                for chunk, vector in zip(chunks, packed, strict=True)]
        with self._transaction():
            self._db.execute("DELETE FROM file_search_chunks WHERE vector_store_id = ? AND file_id = ?",
                             (vector_store_id, file_id))
            self._db.executemany(
                "INSERT INTO file_search_chunks (vector_store_id, file_id, chunk_index, text, tokens, embedding, "
                "embedding_model) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return sum(len(chunk.text.encode("utf-8")) + (len(vector) if vector else 0)
                   for chunk, vector in zip(chunks, packed, strict=True))

    def remove_file(self, vector_store_id: str, file_id: str) -> None:
        """Forget a file's chunks in one store (nothing happens if it has none)."""
        with self._transaction():
            self._db.execute("DELETE FROM file_search_chunks WHERE vector_store_id = ? AND file_id = ?",
                             (vector_store_id, file_id))

    def remove_store(self, vector_store_id: str) -> None:
        """Forget every chunk of a store."""
        with self._transaction():
            self._db.execute("DELETE FROM file_search_chunks WHERE vector_store_id = ?", (vector_store_id,))

    def file_chunks(self, vector_store_id: str, file_id: str) -> list[str]:
        """A file's chunk texts in order ([] when it has none): what `.../files/{file_id}/content` shows."""
        with self._lock:
            rows = self._db.execute(
                "SELECT text FROM file_search_chunks WHERE vector_store_id = ? AND file_id = ? ORDER BY chunk_index",
                (vector_store_id, file_id)).fetchall()
        return [row[0] for row in rows]

    def store_bytes(self, vector_store_id: str) -> int:
        """The bytes a store's chunks take (as add_file counts them): its `usage_bytes`."""
        with self._lock:
            row = self._db.execute(
                "SELECT coalesce(sum(length(CAST(text AS BLOB)) + coalesce(length(embedding), 0)), 0) "
                "FROM file_search_chunks WHERE vector_store_id = ?", (vector_store_id,)).fetchone()
        return int(row[0])

    def search(self, vector_store_ids: list[str], query: str | Sequence[str], *, max_num_results: int = 10,
               score_threshold: float = 0.0, allowed_files: Callable[[str, str], bool] | None = None,
               embed: Embed | None = None, model: str | None = None) -> list[SearchHit]:
        """The chunks of these stores that best match the query, best first, at most `max_num_results`, none
        scoring below `score_threshold` (see the module's docstring for the scores).

        Any query is taken as plain words: FTS5 syntax in it is only text, so no query raises; one without words
        finds nothing. A list of queries is searched as one. `allowed_files(vector_store_id, file_id)` keeps only the
        files it accepts (how the caller applies attribute filters; asked once per file). With `embed` (the
        embedding model `model`, called once, only when the query has words), chunks stored with embeddings of
        that model are ranked by meaning too and the rankings fused.
        """
        if max_num_results < 1:
            raise ValueError("max_num_results must be at least 1")
        if embed is not None and not model:
            raise ValueError("embed needs the name of its model")
        text = query if isinstance(query, str) else "\n".join(query)
        terms = query_terms(text)
        if not vector_store_ids or not terms:
            return []
        allowed = _Allowed(allowed_files)
        query_vector = _unit(check_vectors(embed([text]), 1)[0]) if embed is not None else None
        if query_vector is None or model is None:
            hits = self._keyword(vector_store_ids, terms, max_num_results, allowed, score_threshold)
            return [self._hit(row_id, score) for row_id, score in hits]
        depth = max(50, 3 * max_num_results)  # how far down each ranking fusion looks
        keyword = self._keyword(vector_store_ids, terms, depth, allowed, 0.0)
        semantic = self._semantic(vector_store_ids, query_vector, model, depth, allowed)
        if not semantic:  # nothing stored with an embedding: the keyword scores stand
            return [self._hit(row_id, score) for row_id, score in keyword[:max_num_results]
                    if score >= score_threshold]
        return [self._hit(row_id, score)
                for row_id, score in fuse([[r for r, _ in keyword], [r for r, _ in semantic]])[:max_num_results]
                if score >= score_threshold]

    def _keyword(self, stores: list[str], terms: list[str], limit: int, allowed: _Allowed,
                 threshold: float) -> list[tuple[int, float]]:
        """(chunk id, score) of the best keyword matches among the allowed files, best first."""
        wanted = set(stores)
        found: list[tuple[int, float]] = []
        with self._lock:
            weight, informative = self._weigh(terms)
            if weight <= 0.0:
                return []
            # each term a quoted string: no FTS5 syntax survives. The chunks table is joined batch by batch, not
            # in SQL: a join looks up every matching row before sorting, twice the cost of bm25 alone
            cursor = self._db.execute(
                "SELECT rowid, bm25(file_search_fts) FROM file_search_fts WHERE file_search_fts MATCH ? "
                "ORDER BY bm25(file_search_fts)", (" OR ".join(f'"{term}"' for term in informative),))
            while len(found) < limit:
                rows = cursor.fetchmany(256)
                if not rows:
                    break
                where = dict(((row_id, (store, file)) for row_id, store, file in self._db.execute(
                    f"SELECT id, vector_store_id, file_id FROM file_search_chunks WHERE id IN "
                    f"({','.join('?' * len(rows))})", [row_id for row_id, _ in rows])))
                for row_id, bm25 in rows:
                    score = 1.0 - math.exp(-_SCORE_BASE * (-bm25 / weight))
                    if score < threshold:  # best first: the rest score lower still
                        cursor.close()
                        return found
                    store, file = where[row_id]
                    if store in wanted and allowed(store, file):
                        found.append((row_id, score))
                        if len(found) >= limit:
                            break
            cursor.close()
        return found

    def _weigh(self, terms: list[str]) -> tuple[float, list[str]]:
        """The query's weight, the bm25 of an average-length chunk holding each term once (the sum of the terms'
        idf as FTS5 computes it, over the terms some chunk holds), and the terms to match: all that some chunk
        holds but those in over half of more than PRUNE_HITS chunks (all the matched ones if that leaves none)."""
        total = self._db.execute("SELECT count(*) FROM file_search_chunks").fetchone()[0]
        weight = 0.0
        informative: list[str] = []
        matched: list[str] = []
        for term in terms:
            hits = self._db.execute("SELECT count(*) FROM file_search_fts WHERE file_search_fts MATCH ?",
                                    (f'"{term}"',)).fetchone()[0]
            if not hits:
                continue
            matched.append(term)
            idf = math.log((total - hits + 0.5) / (hits + 0.5))
            if idf > 0.0 or hits <= PRUNE_HITS:
                informative.append(term)
            weight += idf if idf > 0.0 else 1e-6  # FTS5's own floor: a term in most rows tells them apart by ~0
        # a floored term adds 1e-6 to a bm25, so leaving it out of MATCH changes no order among the others; in a
        # large store it spares scoring the tens of thousands of rows that only it matches ("the", "what")
        return weight, informative or matched

    def _semantic(self, stores: list[str], query: array[float], model: str, limit: int,
                  allowed: _Allowed) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the chunks nearest the query among the allowed files, best first;
        only chunks embedded by `model` at the query's size are compared (the others are warned about)."""
        marks = ",".join("?" * len(stores))
        size = len(query) * 4
        ids: list[int] = []
        blobs: list[bytes] = []
        others: dict[tuple[str, str | None], int] = {}  # (store, model) -> chunks that cannot be compared
        with self._lock:
            cursor = self._db.execute(
                f"SELECT id, vector_store_id, file_id, embedding_model, embedding FROM file_search_chunks "
                f"WHERE vector_store_id IN ({marks})", stores)
            for row_id, store, file, stored_model, blob in cursor:
                if not allowed(store, file):
                    continue
                if blob is None or stored_model != model or len(blob) != size:  # another model's space, or none
                    shown = None if blob is None else f"{stored_model}, {len(blob) // 4} dimensions"
                    others[(store, shown)] = others.get((store, shown), 0) + 1
                    continue
                ids.append(row_id)
                blobs.append(blob)
        self._warn_unlike(others, f"{model}, {len(query)} dimensions")
        return _nearest(ids, blobs, query, limit)

    def _warn_unlike(self, others: dict[tuple[str, str | None], int], query_model: str) -> None:
        """Say once per store and model that some of its chunks are ranked by keywords only."""
        for (store, stored), count in sorted(others.items(), key=lambda item: (item[0][0], item[0][1] or "")):
            if (store, stored, query_model) in self._warned:
                continue
            self._warned.add((store, stored, query_model))
            how = f"were embedded by another model ({stored})" if stored else "have no embeddings"
            _log.warning("vector store %s: %d chunk(s) %s, so a query embedded by %s ranks them by keywords only; "
                         "add their files to the store again to embed them with this model", store, count, how,
                         query_model)

    def _hit(self, row_id: int, score: float) -> SearchHit:
        with self._lock:
            store, file, index, text = self._db.execute(
                "SELECT vector_store_id, file_id, chunk_index, text FROM file_search_chunks WHERE id = ?",
                (row_id,)).fetchone()
        return SearchHit(store, file, score, text, index)


def query_terms(query: str) -> list[str]:
    """The distinct words of a query (case-folded, first MAX_QUERY_TERMS); punctuation and FTS5 syntax dropped."""
    terms: dict[str, None] = {}
    for word in _WORD.findall(query):
        terms.setdefault(word.casefold(), None)
        if len(terms) >= MAX_QUERY_TERMS:
            break
    return list(terms)


def fuse(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of rankings of ids (best first): (id, score) best first, score = sum of 1/(k + rank)
    over the rankings, divided by its best value (first in every ranking) so it lies in 0..1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1)
    order = sorted(fused.items(), key=lambda pair: -pair[1])  # stable: ties keep the keyword ranking's order
    return [(item, score / best) for item, score in order]


class _Allowed:
    """`allowed_files` asked once per file of a search."""

    def __init__(self, allowed_files: Callable[[str, str], bool] | None) -> None:
        self._allowed_files = allowed_files
        self._seen: dict[tuple[str, str], bool] = {}

    def __call__(self, store: str, file: str) -> bool:
        if self._allowed_files is None:
            return True
        key = (store, file)
        if key not in self._seen:
            self._seen[key] = bool(self._allowed_files(store, file))
        return self._seen[key]


def check_vectors(vectors: Sequence[Sequence[float]], count: int) -> Sequence[Sequence[float]]:
    """An embedder's vectors for `count` texts, checked: one per text, all of one size, finite (ValueError
    otherwise); returned as they are."""
    if len(vectors) != count:
        raise ValueError(f"the embedder returned {len(vectors)} vectors for {count} texts")
    sizes = {len(vector) for vector in vectors}
    if len(sizes) > 1 or 0 in sizes:
        raise ValueError("the embedder returned vectors of different or no size")
    for vector in vectors:
        if not all(math.isfinite(x) for x in vector):
            raise ValueError("the embedder returned a vector that is not finite")
    return vectors


def _dot_python(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(map(operator.mul, a, b))


_dot: Callable[[Sequence[float], Sequence[float]], float] = getattr(math, "sumprod", _dot_python)  # 3.12: in C


def _nearest(ids: list[int], blobs: list[bytes], query: array[float], limit: int) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity) of the `limit` stored unit vectors nearest the query with a similarity above
    0, best first (ties: the older chunk first). With numpy installed (the `code` and `similar` extras bring it)
    the products are one matrix product, about a hundred times faster than Python's loop over the vectors."""
    if "numpy" not in sys.modules:
        # one BLAS thread: a pool of them would take the signals the main thread holds back (the transcript
        # writer's SIGTERM between its two renames), and one matrix-vector product gains nothing from more
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")
    try:
        import numpy
    except ImportError:
        numpy = None  # type: ignore[assignment]
    if numpy is not None and ids:
        matrix = numpy.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), len(query))
        similarities = matrix @ numpy.asarray(query, dtype="<f4")
        order = numpy.lexsort((numpy.asarray(ids), -similarities))[:limit]  # by similarity, then by id
        return [(ids[i], float(similarities[i])) for i in order if similarities[i] > 0.0]
    best: list[tuple[float, int]] = []  # a heap of the `limit` best
    for row_id, blob in zip(ids, blobs, strict=True):
        similarity = _dot(_unpack(blob), query)
        if similarity <= 0.0:
            continue
        if len(best) < limit:
            heapq.heappush(best, (similarity, -row_id))
        elif similarity > best[0][0]:
            heapq.heapreplace(best, (similarity, -row_id))
    return [(-neg_id, similarity) for similarity, neg_id in sorted(best, reverse=True)]


def _unit(vector: Sequence[float]) -> array[float]:
    """The vector scaled to length 1 (float32), so a dot product is the cosine; a zero vector stays zero."""
    norm = math.sqrt(sum(x * x for x in vector))
    return array("f", (x / norm for x in vector) if norm else vector)


def _pack(vector: Sequence[float]) -> bytes:
    """A unit vector as a little-endian float32 blob (a database file may move to another machine)."""
    unit = _unit(vector)
    if sys.byteorder == "big":
        unit.byteswap()
    return unit.tobytes()


def _unpack(blob: bytes) -> array[float]:
    """A stored vector back from its little-endian float32 blob."""
    vector = array("f")
    vector.frombytes(blob)
    if sys.byteorder == "big":
        vector.byteswap()
    return vector
