"""Knowledge retrieval for the Vector stores API and the `file_search` tool, offline in the backend's SQLite file.

extract.py turns a file's bytes into text. Nothing here talks to the network.
"""

from runner.server.tools.file_search.extract import InvalidFile, UnsupportedFile, extract_text

__all__ = ["InvalidFile", "UnsupportedFile", "extract_text"]
