"""Transcripts and their writers (JSON, Markdown) and the console summary."""
