"""What makes a conversation, as digests: the transcript records them, so `runner rejudge` can tell a spec whose
conversation changed since its transcript was recorded (and needs a run) from one whose expectations alone did.

The digests cover what is sent or decides what comes back: each turn's user text, instructions, run options,
tool outputs and attachments (paths and contents), the assistant (model, instructions, tools, settings, or the
existing assistant's id), the spec's files (paths and contents) and the offline backend's provider and rules.
Expectations are left out on purpose: changing them is what a re-judge is for.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from runner.spec.model import AssistantConfig, KnowledgeFile, Spec, Turn

_content_digests: dict[tuple[str, int, int, int], str] = {}  # a file is read once while it stays the same


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _content(file: KnowledgeFile) -> str:
    """The SHA-256 of a file's contents ("missing" when it cannot be read: the run fails on it anyway)."""
    try:
        info = os.stat(file.location)
    except OSError:
        return "missing"
    key = (file.location, info.st_mtime_ns, info.st_size, info.st_ino)
    if key not in _content_digests:
        sha = hashlib.sha256()
        try:
            with open(file.location, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    sha.update(block)
        except OSError:
            return "missing"
        _content_digests[key] = sha.hexdigest()
    return _content_digests[key]


def _files(files: tuple[KnowledgeFile, ...]) -> list[list[str]]:
    return [[f.path, _content(f)] for f in files]


def _turn(turn: Turn) -> dict[str, Any]:
    return {"user": turn.user, "instructions": turn.instructions,
            "additional_instructions": turn.additional_instructions, "run": turn.run.to_params(),
            "tool_outputs": {name: [h.output, h.template, h.python] for name, h in turn.tool_outputs.items()},
            "attachments": _files(turn.attachments)}


def _assistant(assistant: AssistantConfig | None, assistant_id: str | None) -> dict[str, Any]:
    return {"params": assistant.to_create_params() if assistant else None, "assistant_id": assistant_id}


def conversation_digest(spec: Spec) -> dict[str, Any]:
    """The digests of the spec's conversation: `assistant`, `backend`, `files`, and one per turn in `turns`."""
    return {"assistant": _digest(_assistant(spec.assistant, spec.assistant_id)),
            "backend": _digest({"provider": spec.backend.provider, "rules": spec.backend.rules}),
            "files": _digest(_files(spec.files)),
            "turns": [_digest(_turn(turn)) for turn in spec.turns]}


def _assistant_change(recorded: dict[str, Any] | None, spec: Spec) -> str:
    """Which of the assistant's settings differ from those recorded, in words."""
    now = spec.assistant.to_create_params() if spec.assistant else None
    if recorded is None or now is None:
        return "the assistant changed (an existing assistant's id, or a spec's own assistant, instead of the other)"
    keys = [key for key in dict.fromkeys([*recorded, *now]) if recorded.get(key) != now.get(key)]
    if keys == ["model"]:
        return f"the assistant's model changed ({recorded.get('model')} -> {now.get('model')})"
    return f"the assistant's {', '.join(keys)} changed" if keys else "the assistant changed"


def _paths(records: list[dict[str, Any]]) -> list[Any]:
    return [r.get("path") for r in records]


def _turn_change(index: int, user: str, attachments: list[dict[str, Any]], turn: Turn) -> str:
    if user != turn.user:
        return f"turn {index + 1}'s user text changed"
    if attachments and _paths(attachments) != [f.path for f in turn.attachments]:
        return f"turn {index + 1}'s attachments changed"
    return f"turn {index + 1}'s run options, instructions, tool outputs or attachments changed"


def conversation_change(recorded: Any, spec: Spec) -> str | None:
    """What about the spec's conversation differs from what the transcript `recorded` (a
    runner.report.transcript.Transcript) was recorded with, in one line; None when nothing does.

    A transcript written before the digests existed is compared by what it shows: the turns' user text and
    attachments, the assistant's settings and the files' paths."""
    turns = recorded.turns
    if len(turns) != len(spec.turns):
        return f"the spec has {len(spec.turns)} turns now, the transcript {len(turns)}"
    digests = recorded.conversation
    if not isinstance(digests, dict):  # an older transcript: what it shows is all there is to compare
        for record, turn in zip(turns, spec.turns, strict=True):
            if record.user != turn.user or (record.attachments
                                            and _paths(record.attachments) != [f.path for f in turn.attachments]):
                return _turn_change(record.index, record.user, record.attachments, turn)
        now = spec.assistant.to_create_params() if spec.assistant else None
        if recorded.assistant != now:
            return _assistant_change(recorded.assistant, spec)
        if recorded.files and _paths(recorded.files) != [f.path for f in spec.files]:
            return "its files changed"
        return None
    current = conversation_digest(spec)
    if digests.get("assistant") != current["assistant"]:
        return _assistant_change(recorded.assistant, spec)
    if digests.get("backend") != current["backend"]:
        return "its backend's provider or rules changed"
    if digests.get("files") != current["files"]:
        same_paths = not recorded.files or _paths(recorded.files) == [f.path for f in spec.files]
        return "its files' contents changed" if same_paths else "its files changed"
    for record, turn, old, new in zip(turns, spec.turns, digests.get("turns") or [], current["turns"], strict=False):
        if old != new:
            return _turn_change(record.index, record.user, record.attachments, turn)
    if len(digests.get("turns") or []) != len(current["turns"]):
        return f"the spec has {len(spec.turns)} turns now, the transcript {len(digests.get('turns') or [])}"
    return None
