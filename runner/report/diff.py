"""Compare two folders of JSON transcripts: which conversations appeared, vanished or changed.

Transcripts are matched by their path relative to each folder (the layout `write_transcript` gives
them). A conversation changed when its verdict, the outcome of one of its checks (on a turn or on the
whole conversation), or the text of one of its replies differs; ids, timestamps and timings are never
compared, so plain runs diff as well as `--stable` ones.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DIFF_LINES = 12  # a reply diff longer than this is cut: the transcripts hold the rest


@dataclass
class ReplyChange:
    """A turn whose reply text differs, with a short unified diff (old `-`, new `+`)."""

    turn: int  # 1-based, as people count turns
    diff: list[str]


@dataclass
class ConversationDiff:
    """How one conversation differs between the folders; `status` is added, removed, changed or unchanged."""

    path: str  # the transcript's path relative to the folders, with `/`
    status: str
    name: str
    spec_file: str
    old_verdict: str | None = None
    new_verdict: str | None = None
    replies: list[ReplyChange] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # checks whose outcome changed, or that came or went

    @property
    def verdict_changed(self) -> bool:
        """True when the conversation is in both folders with different verdicts."""
        return self.status == "changed" and self.old_verdict != self.new_verdict


@dataclass
class FileProblem:
    """A JSON file that could not be compared: `kind` is `unreadable` or `not a transcript`."""

    path: str
    side: str  # "old" or "new"
    kind: str
    message: str


@dataclass
class DiffResult:
    """Every conversation found in either folder, and the JSON files that could not be compared."""

    old: Path
    new: Path
    conversations: list[ConversationDiff] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)

    def _with(self, status: str) -> list[ConversationDiff]:
        return [c for c in self.conversations if c.status == status]

    @property
    def added(self) -> list[ConversationDiff]:
        """Conversations only in the new folder."""
        return self._with("added")

    @property
    def removed(self) -> list[ConversationDiff]:
        """Conversations only in the old folder."""
        return self._with("removed")

    @property
    def modified(self) -> list[ConversationDiff]:
        """Conversations in both folders that differ."""
        return self._with("changed")

    @property
    def unchanged(self) -> list[ConversationDiff]:
        """Conversations in both folders that agree."""
        return self._with("unchanged")

    @property
    def unreadable(self) -> list[FileProblem]:
        """Files that could not be read or parsed: they may hide a change."""
        return [p for p in self.problems if p.kind == "unreadable"]

    @property
    def changed(self) -> bool:
        """True when a conversation was added, removed or changed, or a transcript could not be read.

        JSON files that are valid but not transcripts (a summary written next to them, say) are
        reported and otherwise left out.
        """
        return any(c.status != "unchanged" for c in self.conversations) or bool(self.unreadable)


class NotTranscript(Exception):
    """Valid JSON that is not a transcript (a summary written beside the transcripts, say)."""


def load_transcript_data(path: Path) -> dict[str, Any]:
    """The transcript in `path`; OSError/ValueError when unreadable, NotTranscript when it is other JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))  # UnicodeDecodeError and JSONDecodeError are ValueErrors
    if not (isinstance(data, dict) and {"spec_file", "name", "verdict", "turns"} <= data.keys()):
        raise NotTranscript("not a transcript (no spec_file, name, verdict and turns)")
    if not (isinstance(data["turns"], list) and all(isinstance(t, dict) for t in data["turns"])):
        raise ValueError("malformed transcript: `turns` is not a list of turns")
    if not all(isinstance(data[key], str) for key in ("spec_file", "name", "verdict")):
        raise ValueError("malformed transcript: spec_file, name and verdict must be strings")
    return data


def scan_folder(folder: Path, side: str, problems: list[FileProblem]) -> dict[str, dict[str, Any]]:
    """The transcripts under `folder` (recursively, the code's own files left out), by their path relative to it
    with `/`; each file that cannot be read or is not a transcript is added to `problems` (marked with `side`)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*.json")):
        if not path.is_file() or produced_file(folder, path):
            continue
        relative = path.relative_to(folder).as_posix()
        try:
            found[relative] = load_transcript_data(path)
        except NotTranscript as exc:
            problems.append(FileProblem(relative, side, "not a transcript", str(exc)))
        except (OSError, ValueError, RecursionError) as exc:
            problems.append(FileProblem(relative, side, "unreadable", f"{type(exc).__name__}: {exc}"))
    return found


def produced_file(folder: Path, path: Path) -> bool:
    """True for a file a conversation's code produced, saved in the `<stem>.files/` folder beside its transcript
    (`<stem>.json`): the code's own JSON, not a transcript."""
    parent = path.parent
    while parent != folder and folder in parent.parents:
        if parent.name.endswith(".files") and parent.with_name(parent.name[: -len(".files")] + ".json").is_file():
            return True
        parent = parent.parent
    return False


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value, ensure_ascii=False)


def _reply_diff(old: str, new: str) -> list[str]:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))[2:]  # no ---/+++
    if not lines:  # the lines agree: only line endings or a final newline differ
        return ["(only line endings differ)"]
    if len(lines) > _DIFF_LINES:
        rest = len(lines) - _DIFF_LINES + 1
        lines = lines[: _DIFF_LINES - 1] + [f"… {rest} more line{'s' if rest != 1 else ''}"]
    return lines


def _reply_changes(old: dict[str, Any], new: dict[str, Any]) -> list[ReplyChange]:
    changes = []
    old_turns, new_turns = old["turns"], new["turns"]
    for i in range(max(len(old_turns), len(new_turns))):
        before = _text(old_turns[i].get("reply")) if i < len(old_turns) else ""
        after = _text(new_turns[i].get("reply")) if i < len(new_turns) else ""
        if before != after:
            changes.append(ReplyChange(i + 1, _reply_diff(before, after)))
    return changes


def _check_outcomes(transcript: dict[str, Any]) -> dict[tuple[int, str, str, int], bool]:
    """Each check's outcome, keyed by turn (0: the whole conversation), type, argument and rank among equal
    checks; never by spec line, which moves when the spec is edited."""
    groups: list[tuple[int, Any]] = [(0, transcript.get("conversation_checks"))]
    groups += [(index + 1, turn.get("checks")) for index, turn in enumerate(transcript["turns"])]
    outcomes: dict[tuple[int, str, str, int], bool] = {}
    for turn, checks in groups:
        for check in checks if isinstance(checks, list) else []:
            if not isinstance(check, dict):
                continue
            kind = str(check.get("type"))
            arg = json.dumps(check.get("arg"), ensure_ascii=False, sort_keys=True)
            rank = 0
            while (turn, kind, arg, rank) in outcomes:
                rank += 1
            outcomes[(turn, kind, arg, rank)] = bool(check.get("passed"))
    return outcomes


def _check_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = _check_outcomes(old), _check_outcomes(new)
    word = {True: "passed", False: "failed"}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        turn, kind, arg, _ = key
        label = f"{'conversation' if turn == 0 else f'turn {turn}'} {kind} {_short(arg)}"
        if key not in after:
            changes.append(f"{label}: no longer checked")
        elif key not in before:
            changes.append(f"{label}: new check, {word[after[key]]}")
        elif before[key] != after[key]:
            changes.append(f"{label}: {word[before[key]]} -> {word[after[key]]}")
    return changes


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compare(path: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> ConversationDiff:
    either = new if new is not None else old
    assert either is not None
    diff = ConversationDiff(path=path, status="unchanged", name=either["name"], spec_file=either["spec_file"],
                            old_verdict=old["verdict"] if old else None, new_verdict=new["verdict"] if new else None)
    if old is None:
        diff.status = "added"
    elif new is None:
        diff.status = "removed"
    else:
        diff.replies = _reply_changes(old, new)
        diff.checks = _check_changes(old, new)
        if diff.old_verdict != diff.new_verdict or diff.replies or diff.checks:
            diff.status = "changed"
    return diff


def diff_dirs(old: Path, new: Path) -> DiffResult:
    """Compare the JSON transcripts under `old` and `new` (recursively), matching them by relative path.

    Files that cannot be read or are not transcripts are listed in `problems` rather than raised.
    Raises NotADirectoryError when `old` or `new` is not a folder.
    """
    for folder in (old, new):
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder}: not a folder")
    problems: list[FileProblem] = []
    before = scan_folder(old, "old", problems)
    after = scan_folder(new, "new", problems)
    return diff_loaded(before, after, old, new, problems)


def diff_loaded(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], old: Path, new: Path,
                problems: list[FileProblem] | None = None) -> DiffResult:
    """Compare transcripts already loaded (as `scan_folder` gives them: by relative path), as `diff_dirs` does;
    `old` and `new` only name the sides, and a path in an unreadable `problems` entry is not compared."""
    result = DiffResult(old=old, new=new, problems=list(problems or []))
    broken = {p.path for p in result.unreadable}  # a side we could not read: neither added, removed nor same
    for path in sorted((before.keys() | after.keys()) - broken):
        result.conversations.append(_compare(path, before.get(path), after.get(path)))
    return result


def _verdicts(diff: ConversationDiff) -> str:
    if diff.status == "added":
        return f"new, {diff.new_verdict}"
    if diff.status == "removed":
        return f"was {diff.old_verdict}"
    parts = []
    if diff.verdict_changed:
        parts.append(f"{diff.old_verdict} -> {diff.new_verdict}")
    if diff.checks:
        parts.append(f"{len(diff.checks)} check{'s' if len(diff.checks) != 1 else ''} changed")
    if diff.replies:
        turns = ", ".join(str(r.turn) for r in diff.replies)
        parts.append(f"reply changed in turn{'s' if len(diff.replies) != 1 else ''} {turns}")
    return "; ".join(parts)


def format_diff(result: DiffResult) -> str:
    """The comparison for the console: a line per conversation that differs, then its check and reply changes
    indented, the files that could not be compared, and a closing `N changed, M unchanged, A added, R removed`."""
    marks = {"added": "+", "removed": "-", "changed": "~"}
    lines: list[str] = []
    for diff in result.conversations:
        if diff.status == "unchanged":
            continue
        lines.append(f"{marks[diff.status]} {diff.spec_file}  {diff.name}  ({_verdicts(diff)})")
        lines.extend(f"    {change}" for change in diff.checks)
        for reply in diff.replies:
            lines.append(f"    turn {reply.turn} reply:")
            lines.extend(f"      {line}" for line in reply.diff)
    for problem in result.problems:
        lines.append(f"! {problem.path} ({problem.side}): {problem.kind}: {problem.message}")
    total = (f"{len(result.modified)} changed, {len(result.unchanged)} unchanged, "
             f"{len(result.added)} added, {len(result.removed)} removed")
    broken = len({p.path for p in result.unreadable})
    if broken:
        total += f", {broken} unreadable"
    lines.append(total)
    return "\n".join(lines)
