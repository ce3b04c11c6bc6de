"""Knowledge retrieval for the Vector stores API and the `file_search` tool, offline in the backend's SQLite file.

extract.py turns a file's bytes into text, chunking.py cuts the text into the API's overlapping token windows,
index.py stores and searches the chunks (FTS5 bm25, optionally fused with embeddings), filters.py applies the
API's attribute filters, embeddings.py makes the embeddings: an OpenAI-compatible endpoint (the only module here
that talks to the network, and only when configured) or a local model.
"""

from runner.server.tools.file_search.chunking import Chunk, check_chunking, chunk_text, parse_chunking_strategy
from runner.server.tools.file_search.extract import InvalidFile, UnsupportedFile, extract_text
from runner.server.tools.file_search.filters import FilterError, check_filters, matches
from runner.server.tools.file_search.index import SearchHit, SearchIndex

__all__ = [
    "Chunk", "FilterError", "InvalidFile", "SearchHit", "SearchIndex", "UnsupportedFile", "check_chunking",
    "check_filters", "chunk_text", "extract_text", "matches", "parse_chunking_strategy",
]
