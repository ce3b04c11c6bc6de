"""The stable view of a transcript: what two replays of the same recording must agree on.

Object ids (random on the embedded backend) become `<prefix>_<n>` (`file-<n>`) by order of first appearance, and
timestamps and timings go, so transcripts of replays diff clean.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

from runner.report.transcript import Transcript

_ID = re.compile(r"\b(?:(asst|thread|msg|run|step|call|vs|conv|resp|fc|fs|ci|cntr)_|(file)-)[A-Za-z0-9]+\b")


class _Renamer:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, match: re.Match[str]) -> str:
        found = match.group(0)
        if found not in self.names:
            prefix, sign = (match.group(1), "_") if match.group(1) else (match.group(2), "-")
            self.counts[prefix] = self.counts.get(prefix, 0) + 1
            self.names[found] = f"{prefix}{sign}{self.counts[prefix]}"
        return self.names[found]

    def text(self, value: Any) -> Any:
        if isinstance(value, str):
            return _ID.sub(self, value)
        if isinstance(value, list):
            return [self.text(v) for v in value]
        if isinstance(value, dict):
            return {k: self.text(v) for k, v in value.items()}
        return value


def stable_copy(transcript: Transcript) -> Transcript:
    """A copy of `transcript` with ids numbered by appearance and no timestamps or timings."""
    stable = copy.deepcopy(transcript)
    rename = _Renamer()
    stable.assistant_id = rename.text(stable.assistant_id)
    stable.thread_id = rename.text(stable.thread_id)
    stable.started_at = 0.0
    stable.duration_ms = 0.0
    stable.error = rename.text(stable.error)
    stable.files = _file_ids(stable.files, rename)
    stable.vector_store_id = rename.text(stable.vector_store_id)
    for turn in stable.turns:
        turn.run_id = rename.text(turn.run_id)
        turn.messages = [{**m, "id": rename.text(m["id"])} for m in turn.messages]  # ids only, never the text
        for call in turn.tool_calls:
            call.id = rename.text(call.id)
        turn.attachments = _file_ids(turn.attachments, rename)
        turn.searches = [dataclasses.replace(s, results=_file_ids(s.results, rename)) for s in turn.searches]
        turn.citations = _file_ids(turn.citations, rename)
        turn.code_runs = [dataclasses.replace(r, images=rename.text(r.images)) for r in turn.code_runs]
        turn.images = rename.text(turn.images)
        turn.files = _file_ids(turn.files, rename)
        turn.outputs = [dataclasses.replace(o, file_id=rename.text(o.file_id), skipped=rename.text(o.skipped))
                        for o in turn.outputs]
        turn.latency_ms = None
        turn.error = rename.text(turn.error)
        turn.last_error = rename.text(turn.last_error)
        turn.checks = [
            dataclasses.replace(c, reason=_stable_reason(c.type, c.arg, c.passed, rename.text(c.reason)))
            for c in turn.checks
        ]
    return stable


def _file_ids(records: list[dict[str, Any]], rename: _Renamer) -> list[dict[str, Any]]:
    """Records with their `file_id` renamed, and nothing else: a search result's text is the file's own."""
    return [{**r, "file_id": rename.text(r.get("file_id"))} for r in records]


def _stable_reason(kind: str, arg: Any, passed: bool, reason: str) -> str:
    if kind != "max_latency_ms":
        return reason
    return f"expected the turn to take at most {arg:g} ms" + ("" if passed else "; it took longer")
