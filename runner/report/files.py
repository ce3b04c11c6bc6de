"""The files a conversation's code produced, beside its transcript: how they are named there and how large they
may be. The engine fetches them within these bounds; the writer saves them with the transcript."""

from __future__ import annotations

import re
from pathlib import Path

from runner.report.transcript import Transcript

# a file the code produced is saved only up to this size (larger ones are listed, with the reason, and not saved)
MAX_OUTPUT_FILE_BYTES = 32 * 1024 * 1024
# and a conversation's produced files together up to this much: a batch holds them in memory until each is written
MAX_OUTPUT_BYTES = 128 * 1024 * 1024
MAX_NAME_CHARS = 100  # characters of a saved file's name, its extension kept

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f-\x9f]')  # what no file name may hold on some system


def safe_name(name: str, fallback: str) -> str:
    """`name` (a backend's, so untrusted) as a plain file name: its last part, without characters a file system
    refuses or a leading dot, at most MAX_NAME_CHARS long; `fallback` when nothing is left."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = _UNSAFE.sub("_", base).strip().lstrip(".")
    if not cleaned:
        cleaned = _UNSAFE.sub("_", fallback).lstrip(".") or "file"
    if len(cleaned) > MAX_NAME_CHARS:
        stem, dot, suffix = cleaned.rpartition(".")
        keep = suffix if dot and len(suffix) <= 10 else ""
        cleaned = cleaned[: MAX_NAME_CHARS - len(keep) - 1].rstrip(".") + ("." + keep if keep else "")
    return cleaned


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `stem-2.ext`, `stem-3.ext`... when a file of the conversation already has it; added to `taken`.
    Names are compared ignoring case, as some file systems do."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem}-{n}" + (f".{suffix}" if suffix else "")
    taken.add(candidate.casefold())
    return candidate


def saved_files(json_path: Path, transcript: Transcript) -> list[tuple[Path, bytes]]:
    """Where each produced file with contents goes (`<stem>.files/<saved_as>` beside the JSON transcript) and its
    bytes; raise ValueError on a name that is not a plain file name (the engine makes them so)."""
    folder = json_path.parent / transcript.files_folder
    out: list[tuple[Path, bytes]] = []
    for turn in transcript.turns:
        for output in turn.outputs:
            if output.saved_as is None or output.data is None:
                continue
            if safe_name(output.saved_as, "") != output.saved_as:
                raise ValueError(f"the produced file name {output.saved_as!r} is not a plain file name")
            out.append((folder / output.saved_as, output.data))
    return out
