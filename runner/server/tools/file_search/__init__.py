"""Knowledge retrieval for the Vector stores API and the `file_search` tool, offline in the backend's SQLite file.

extract.py turns a file's bytes into text, chunking.py cuts the text into the API's overlapping token windows.
Nothing here talks to the network.
"""

from runner.server.tools.file_search.chunking import Chunk, check_chunking, chunk_text, parse_chunking_strategy
from runner.server.tools.file_search.extract import InvalidFile, UnsupportedFile, extract_text

__all__ = ["Chunk", "InvalidFile", "UnsupportedFile", "check_chunking", "chunk_text", "extract_text",
           "parse_chunking_strategy"]
