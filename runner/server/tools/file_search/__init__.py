"""Knowledge retrieval for the Vector stores API and the `file_search` tool, offline in the backend's SQLite file.

extract.py turns a file's bytes into text, chunking.py cuts the text into the API's overlapping token windows,
index.py stores and searches the chunks (FTS5 bm25, optionally fused with embeddings), filters.py applies the
API's attribute filters, citations.py writes the results for the model and reads its citations back,
embeddings.py makes the embeddings: an OpenAI-compatible endpoint (the only module here that talks to the
network, and only when configured) or a local model.

The names below load their module on first use (PEP 562): a backend that never indexes a file does not pay
for the extractors at start-up.
"""

from __future__ import annotations

from runner.server.tools import lazy_names

_HOMES = {
    "Chunk": "chunking", "check_chunking": "chunking", "chunk_text": "chunking", "parse_chunking_strategy": "chunking",
    "InvalidFile": "extract", "UnsupportedFile": "extract", "extract_text": "extract",
    "FilterError": "filters", "check_filters": "filters", "matches": "filters",
    "SearchHit": "index", "SearchIndex": "index",
}
__all__ = sorted(_HOMES)


__getattr__ = lazy_names(__name__, _HOMES)
