"""The HTML report: one self-contained file showing a run's conversations, for people (and as a CI artifact).

The transcripts' data is embedded as JSON in a `<script type="application/json">` element (`<`, `>`, `&`,
U+2028 and U+2029 escaped, so nothing in a reply can end the element), and the page's own script renders it with
createElement and textContent only. Styles and script are inline; the page asks no other host for anything
(its Content-Security-Policy forbids it), so it works offline and from a CI artifact's zip.
The template, style and script live in `html_assets/` beside this module.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from runner.report.diff import ConversationDiff, DiffResult, FileProblem, diff_loaded, scan_folder
from runner.spec.paths import inside, resolved

REPORT_VERSION = 1
# an image the code showed is embedded (as a data: URI) up to this size; larger ones are linked, beside the
# transcripts, so a report of many chart-drawing conversations stays small enough to open
MAX_EMBEDDED_IMAGE_BYTES = 256 * 1024
MAX_EMBEDDED_TOTAL_BYTES = 16 * 1024 * 1024  # and all embedded images of a report together
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp"}  # no SVG: it can carry script
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_MARKER = re.compile(r"\{\{(TITLE|STYLE|SCRIPT|INDEX|DATA|SCRIPT_HASH)\}\}")


class NoTranscripts(Exception):
    """The folder holds no transcript to report on."""


@dataclass
class Conversation:
    """One transcript for the report: its path relative to the transcripts folder (with `/`), its data (as
    `Transcript.to_dict()` gives it) and the folder its JSON file is in (for links to the files beside it)."""

    path: str
    data: dict[str, Any]
    folder: Path
    not_run: bool = False


@dataclass
class Loaded:
    """The transcripts found in a folder, and the JSON files that could not be read."""

    conversations: list[Conversation] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)


def load_folder(folder: Path) -> Loaded:
    """Read every transcript under `folder`, as `runner diff` does: a file that cannot be read or parsed is in
    `problems` (kind `unreadable`); other JSON (a summary written beside them) is left out quietly."""
    problems: list[FileProblem] = []
    found = scan_folder(folder, "new", problems)
    conversations = [Conversation(path, data, (folder / path).parent) for path, data in found.items()]
    return Loaded(conversations, [p for p in problems if p.kind == "unreadable"])


def embed_json(value: Any) -> str:
    """`value` as JSON that is safe inside a `<script>` element: no `<`, `>` or `&` (so no `</script>` or
    `<!--`), and no U+2028/U+2029; all of them only ever occur inside JSON strings, where `\\uXXXX` means the same."""
    from runner.report.writers import without_surrogates

    # a lone surrogate (valid JSON: "\\ud800") cannot be written as UTF-8: it is shown as U+FFFD
    text = without_surrogates(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    return re.sub("[<>&\u2028\u2029]", lambda m: _ESCAPES[m.group(0)], text)


def _asset(name: str) -> str:
    return resources.files("runner.report").joinpath("html_assets", name).read_text(encoding="utf-8")


def _relative_dir(folder: Path, html_dir: Path) -> str:
    """The transcripts' folder as seen from the report's, with `/` (absolute when there is no relative path)."""
    try:
        return Path(os.path.relpath(folder.resolve(), html_dir.resolve())).as_posix()
    except ValueError:  # another drive, on Windows
        return folder.resolve().as_posix()


OUTSIDE = "not embedded: outside the transcripts folder"


def _confined(data: dict[str, Any], folder: Path, root: Path) -> dict[str, Any]:
    """The transcript with every output file outside `root` (a transcript can name any path, `/home/me/.ssh/x.png`
    or `../../x.png`) neither embedded nor linked: its path dropped, and why in `skipped`. A copy only when
    something changed."""
    turns = data.get("turns")
    if not isinstance(turns, list):
        return data
    changed = False
    confined_turns: list[Any] = []
    for turn in turns:
        outputs = turn.get("outputs") if isinstance(turn, dict) else None
        if not isinstance(outputs, list):
            confined_turns.append(turn)
            continue
        confined_outputs = []
        for output in outputs:
            if isinstance(output, dict) and isinstance(output.get("path"), str) \
                    and not inside(folder / output["path"], root):
                output = {**output, "path": None, "skipped": OUTSIDE}
                changed = True
            confined_outputs.append(output)
        confined_turns.append({**turn, "outputs": confined_outputs})
    return {**data, "turns": confined_turns} if changed else data


def _media(conversation: Conversation, budget: list[int]) -> dict[str, str]:
    """The small images the conversation's code produced, as data: URIs by file id (within what `budget` has left);
    its outputs are confined to the transcripts folder already (see `_confined`)."""
    out: dict[str, str] = {}
    for turn in conversation.data.get("turns") or []:
        for output in turn.get("outputs") or [] if isinstance(turn, dict) else []:
            if not isinstance(output, dict) or output.get("kind") != "image" or not isinstance(output.get("path"), str):
                continue
            path = conversation.folder / output["path"]
            kind = _IMAGE_TYPES.get(path.suffix.lower())
            try:
                size = path.stat().st_size
                if kind is None or size > MAX_EMBEDDED_IMAGE_BYTES or size > budget[0]:
                    continue
                data = path.read_bytes()
            except OSError:  # gone since, or unreadable: the report links to where it should be
                continue
            budget[0] -= len(data)
            out[str(output.get("file_id"))] = f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
    return out


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _row(data: dict[str, Any], diff: ConversationDiff | None) -> dict[str, Any]:
    """What the summary and the table show of a conversation: read before the transcripts, so the table is up first."""
    turns = [t for t in data.get("turns") or [] if isinstance(t, dict)]
    counts: dict[str, Any] = data["checks"] if isinstance(data.get("checks"), dict) else {}
    latencies = [n for n in (_number(t.get("latency_ms")) for t in turns) if n is not None]
    tokens = [n for n in (_number((t.get("usage") or {}).get("total_tokens")) for t in turns
                          if isinstance(t.get("usage"), dict)) if n is not None]
    backend: dict[str, Any] = data["backend"] if isinstance(data.get("backend"), dict) else {}
    kind = backend.get("kind")
    return {"verdict": data.get("verdict"), "name": data.get("name"), "spec": data.get("spec_file"),
            "case": data.get("case") or "", "turns": len(turns), "passed": _number(counts.get("passed")),
            "failed": _number(counts.get("failed")), "not_judged": _number(counts.get("not_judged")),
            "latency": round(sum(latencies), 1) if latencies else None, "tokens": sum(tokens) if tokens else None,
            "tags": data.get("tags") if isinstance(data.get("tags"), list) else [], "pipeline": data.get("pipeline"),
            "model": data.get("model"),
            "backend": f"{kind}" + (f" ({backend['base_url']})" if backend.get("base_url") else "") if kind else None,
            "duration_ms": _number(data.get("duration_ms")), "started_at": _number(data.get("started_at")),
            "change": diff.status if diff is not None else None}


def _diff_dict(diff: ConversationDiff) -> dict[str, Any]:
    return {"status": diff.status, "old_verdict": diff.old_verdict, "new_verdict": diff.new_verdict,
            "checks": diff.checks, "replies": [{"turn": r.turn, "diff": r.diff} for r in diff.replies]}


def compare_with(baseline: Path, conversations: list[Conversation]) -> DiffResult:
    """What changed since the transcripts in `baseline`, as `runner diff baseline NEW` computes it."""
    problems: list[FileProblem] = []
    before = scan_folder(baseline, "old", problems)
    after = {c.path: c.data for c in conversations if not c.not_run}
    return diff_loaded(before, after, baseline, Path("."), problems)


def report_data(conversations: list[Conversation], html_path: Path, *, title: str = "runner report",
                source: str | None = None, seconds: float | None = None, baseline: DiffResult | None = None,
                baseline_label: str | None = None, problems: list[FileProblem] | None = None,
                generated_at: str | None = None, root: Path | None = None) -> dict[str, Any]:
    """The data the page renders: `rows` (what the summary and the table show of each conversation) and
    `conversations` (the transcripts as they are, each with its links' folder, small images, and its changes since
    the baseline, as `runner diff` computes them). Only the files inside `root`, the transcripts folder (each
    conversation's own folder when not given), are embedded or linked."""
    html_dir = html_path.parent
    by_path = {d.path: d for d in baseline.conversations} if baseline is not None else {}
    budget = [MAX_EMBEDDED_TOTAL_BYTES]
    root_resolved = resolved(root) if root is not None else None
    items, rows = [], []
    for conversation in conversations:
        diff = by_path.get(conversation.path)
        confine_to = root_resolved if root_resolved is not None else resolved(conversation.folder)
        conversation = Conversation(conversation.path, _confined(conversation.data, conversation.folder, confine_to),
                                    conversation.folder, conversation.not_run)
        item: dict[str, Any] = {"path": conversation.path, "dir": _relative_dir(conversation.folder, html_dir),
                                "transcript": conversation.data,
                                "diff": _diff_dict(diff) if diff is not None else None}
        if conversation.not_run:
            item["not_run"] = True
        media = _media(conversation, budget)
        if media:
            item["media"] = media
        items.append(item)
        rows.append(_row(conversation.data, diff))
    base: dict[str, Any] | None = None
    if baseline is not None:
        base = {"label": baseline_label or str(baseline.old),
                "counts": {"changed": len(baseline.modified), "unchanged": len(baseline.unchanged),
                           "added": len(baseline.added), "removed": len(baseline.removed)},
                "removed": [{"path": d.path, "name": d.name, "spec_file": d.spec_file, "old_verdict": d.old_verdict}
                            for d in baseline.removed],
                "problems": [{"path": p.path, "message": f"{p.kind}: {p.message}"} for p in baseline.unreadable
                             if p.side == "old"]}
    return {
        "version": REPORT_VERSION, "title": title, "source": source, "seconds": seconds,
        "generated_at": generated_at or datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "problems": [{"path": p.path, "message": f"{p.kind}: {p.message}"} for p in problems or []]
        + (base["problems"] if base else []),
        "baseline": base, "rows": rows, "conversations": items,
    }


def render_html(data: dict[str, Any]) -> str:
    """The whole page for `data` (as `report_data` gives it): template, style, script and the data, inline; the
    transcripts come after the script, everything else before it."""
    import html as html_escape

    script = _asset("report.js")
    # the Content-Security-Policy allows this script alone: anything injected could not run even if it got in
    digest = base64.b64encode(hashlib.sha256(f"\n{script}\n".encode()).digest()).decode("ascii")
    parts = {"TITLE": html_escape.escape(str(data.get("title") or "runner report")), "STYLE": _asset("report.css"),
             "SCRIPT": script, "SCRIPT_HASH": f"'sha256-{digest}'",
             "INDEX": embed_json({k: v for k, v in data.items() if k != "conversations"}),
             "DATA": embed_json({"conversations": data.get("conversations", [])})}
    # one pass over the template: a marker inside the data is never replaced
    return _MARKER.sub(lambda m: parts[m.group(1)], _asset("report.html"))


def write_html(path: Path, data: dict[str, Any]) -> int:
    """Write the page to `path` atomically (a temporary file, then a rename); return its size in bytes.
    Raises OSError when it cannot be written."""
    from runner.report.writers import atomic_write, without_surrogates

    text = without_surrogates(render_html(data))  # the title, say, can hold one too
    atomic_write(path, text)
    return len(text.encode("utf-8"))


def not_run_entry(spec_file: str, name: str, why: str) -> dict[str, Any]:
    """A conversation of the batch that never ran, as a transcript-shaped entry with the verdict `skipped`."""
    return {"version": 1, "name": name, "verdict": "skipped", "spec_file": spec_file, "case": "", "tags": [],
            "backend": {}, "model": None, "error": why, "checks": {"passed": 0, "failed": 0, "not_judged": 0},
            "conversation_checks": [], "turns": []}
