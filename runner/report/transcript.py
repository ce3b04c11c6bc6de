"""The transcript of one conversation: what was sent, what came back, and how each check went.

The engine fills it, the checks add their results, the writers render it. It is plain data
(dataclasses that turn into JSON), so writers and later tools never need the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

TRANSCRIPT_VERSION = 1


@dataclass
class ToolCallRecord:
    """One function call the assistant made and the output the runner sent back."""

    id: str
    name: str
    arguments: Any
    output: str | None = None


@dataclass
class SearchRecord:
    """One file_search call of a turn's run: what it searched for and what it found.

    Each result is `{"file_id", "file_name", "score", "text"}` (the text of the chunk found).
    """

    queries: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CodeRunRecord:
    """One code_interpreter call of a turn's run: the code, what it printed, and the images it showed."""

    input: str
    logs: str = ""  # its `logs` outputs, joined: what the code printed, a traceback, a limit that stopped it
    images: list[str] = field(default_factory=list)  # the file ids of its `image` outputs


@dataclass
class OutputFile:
    """A file a turn's code produced (an image it showed, a file it wrote in /mnt/data), fetched for the
    transcript: the writer saves `data` in the transcript's files folder as `saved_as`, and the JSON names it."""

    file_id: str
    name: str  # its name on the backend: the base name it had in /mnt/data (`summary.csv`, `image-1.png`)
    kind: str  # `image` (shown by the code, or an image_file of the reply) or `file` (a file_path annotation)
    size: int | None = None  # its size in bytes, when known
    saved_as: str | None = None  # its name in the files folder (unique in the conversation); None: not saved
    skipped: str | None = None  # why it was not saved (too large, not downloadable)
    data: bytes | None = field(default=None, repr=False)  # the content, until the writer has saved it

    def to_dict(self, folder: str) -> dict[str, Any]:
        """What the JSON transcript shows of it: `path` is where it was saved, relative to the transcript."""
        return {"file_id": self.file_id, "name": self.name, "kind": self.kind, "size": self.size,
                "path": f"{folder}/{self.saved_as}" if self.saved_as is not None else None, "skipped": self.skipped}


@dataclass
class CheckResult:
    """The outcome of one check; `reason` shows what was expected and what came back."""

    type: str
    arg: Any
    passed: bool
    reason: str
    where: str = ""
    implicit: bool = False
    # False when the turn ended in an error before there was anything to judge (a replay miss, a timeout):
    # the check neither passed nor failed, and the turn's error says why
    judged: bool = True


@dataclass
class TurnRecord:
    """One turn: the user's message, the run that answered it, and the checks on it."""

    index: int
    user: str
    reply: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)  # {"path", "file_id", "file_name"} each
    searches: list[SearchRecord] = field(default_factory=list)  # the run's file_search calls, in order
    citations: list[dict[str, Any]] = field(default_factory=list)  # the reply's {"file_id", "file_name", "text"}
    code_runs: list[CodeRunRecord] = field(default_factory=list)  # the run's code_interpreter calls, in order
    images: list[str] = field(default_factory=list)  # file ids of the reply's image_file parts
    files: list[dict[str, Any]] = field(default_factory=list)  # the reply's file_path annotations: {"file_id", "path"}
    outputs: list[OutputFile] = field(default_factory=list)  # the files the code produced, fetched
    run_id: str | None = None
    status: str | None = None
    last_error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    usage: dict[str, int] | None = None
    latency_ms: float | None = None
    error: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    skipped: bool = False

    @property
    def passed(self) -> bool:
        """True when the turn ran, had no runner error, and every check passed."""
        return not self.skipped and self.error is None and all(c.passed for c in self.checks)


@dataclass
class Transcript:
    """One conversation from start to verdict."""

    spec_file: str
    name: str
    backend: dict[str, Any]
    model: str | None
    assistant: dict[str, Any] | None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    assistant_id: str | None = None
    thread_id: str | None = None
    started_at: float = 0.0
    duration_ms: float = 0.0
    turns: list[TurnRecord] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)  # the spec's `files`: {"path", "file_id", "file_name"}
    vector_store_id: str | None = None  # the store holding them
    conversation_checks: list[CheckResult] = field(default_factory=list)  # the spec's top-level `expect`
    case: str = ""  # the matrix case (`lang=fr`), '' without a matrix; `name` already shows it
    error: str | None = None
    pipeline: str = "assistants"  # which API ran it: assistants (threads and runs) or responses (conversations)
    # digests of what made the conversation (runner.spec.fingerprint): `runner rejudge` tells a changed spec by them
    conversation: dict[str, Any] | None = None
    version: int = TRANSCRIPT_VERSION

    @property
    def key(self) -> str:
        """Which conversation this is: its spec file, with its matrix case when it has one."""
        return f"{self.spec_file}[{self.case}]" if self.case else self.spec_file

    @property
    def files_folder(self) -> str:
        """The name of the folder beside the transcript holding the files its code produced: `<stem>.files`."""
        from runner.spec.paths import output_stem

        return output_stem(self.spec_file, self.case).name + ".files"

    def release_files(self) -> None:
        """Drop the produced files' contents once written: a batch keeps every transcript until its end."""
        for turn in self.turns:
            for output in turn.outputs:
                output.data = None

    @property
    def passed(self) -> bool:
        """True when the conversation ran to its end and every check of every turn passed."""
        return (self.error is None and bool(self.turns) and all(t.passed for t in self.turns)
                and all(c.passed for c in self.conversation_checks))

    @property
    def verdict(self) -> str:
        """`passed`, `failed` (a check failed or a run did not complete) or `error` (the runner could not finish)."""
        if self.passed:
            return "passed"
        return "error" if self.error is not None else "failed"

    def failures(self) -> list[tuple[TurnRecord | None, CheckResult | None]]:
        """Each failed check with its turn (None for a check on the whole conversation); a turn error or
        skip appears with None as its check. An implicit status check that only repeats its turn's error
        is left out."""
        out: list[tuple[TurnRecord | None, CheckResult | None]] = []
        for turn in self.turns:
            if turn.error is not None or turn.skipped:
                out.append((turn, None))
            # a check not judged because of the turn's error is told by that error; one not judged for its own
            # reason (`runner rejudge`: no recording answers its grader) is listed with that reason
            out.extend((turn, c) for c in turn.checks if not c.passed and (c.judged or turn.error is None)
                       and not (c.implicit and turn.error))
        out.extend((None, c) for c in self.conversation_checks
                   if not c.passed and (c.judged or self.error is None))
        return out

    def check_counts(self) -> dict[str, int]:
        """How many checks passed, failed, and could not be judged (their turn ended in an error, or a re-judge
        had nothing to judge them with)."""
        checks = [c for t in self.turns for c in t.checks] + list(self.conversation_checks)
        passed = sum(c.passed for c in checks)
        not_judged = sum(not c.judged for c in checks)
        return {"passed": passed, "failed": len(checks) - passed - not_judged, "not_judged": not_judged}

    def to_dict(self) -> dict[str, Any]:
        """The transcript as JSON-ready data, verdict included (shares nested values with the transcript:
        serialise it, do not change it)."""
        # field by field: dataclasses.asdict deep-copies everything, and cost more than the conversation
        return {
            "version": self.version, "name": self.name, "verdict": self.verdict, "spec_file": self.spec_file,
            "pipeline": self.pipeline,
            "case": self.case, "description": self.description, "tags": list(self.tags), "backend": self.backend,
            "model": self.model, "assistant": self.assistant, "assistant_id": self.assistant_id,
            "thread_id": self.thread_id, "files": self.files, "vector_store_id": self.vector_store_id,
            "started_at": self.started_at,
            # timings to a tenth of a millisecond: finer digits are noise that only clutters diffs
            "duration_ms": round(self.duration_ms, 1), "error": self.error,
            "conversation": self.conversation,
            "checks": self.check_counts(),
            "conversation_checks": [vars(c).copy() for c in self.conversation_checks],
            "turns": [_turn_dict(t, self.files_folder if any(t.outputs for t in self.turns) else "")
                      for t in self.turns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        """The transcript a JSON transcript (`to_dict`'s shape) holds; what to_dict derives (verdict, check counts)
        is recomputed, and produced files stay where they were saved (their contents are not read).

        Raises ValueError (or TypeError, KeyError) on data that is not a transcript's."""
        if not isinstance(data, dict):
            raise ValueError("a transcript is a JSON object")
        known = {f.name for f in fields(cls)} - {"turns", "conversation_checks"}
        values = {key: value for key, value in data.items() if key in known}
        return cls(**values, turns=[_turn_from_dict(t) for t in data.get("turns") or []],
                   conversation_checks=[_check_from_dict(c) for c in data.get("conversation_checks") or []])


def _check_from_dict(data: dict[str, Any]) -> CheckResult:
    return CheckResult(**{key: value for key, value in data.items() if key in _CHECK_FIELDS})


def _output_from_dict(data: dict[str, Any]) -> OutputFile:
    path = data.get("path")
    # `<stem>.files/<saved_as>`: one folder name, then a plain file name (see runner.report.files.safe_name)
    saved_as = path.split("/", 1)[-1] if isinstance(path, str) else None
    return OutputFile(file_id=data["file_id"], name=data["name"], kind=data["kind"], size=data.get("size"),
                      saved_as=saved_as, skipped=data.get("skipped"))


def _turn_from_dict(data: dict[str, Any]) -> TurnRecord:
    values = {key: value for key, value in data.items() if key in _TURN_FIELDS}
    values["tool_calls"] = [ToolCallRecord(**c) for c in data.get("tool_calls") or []]
    values["searches"] = [SearchRecord(**s) for s in data.get("searches") or []]
    values["code_runs"] = [CodeRunRecord(**r) for r in data.get("code_runs") or []]
    values["outputs"] = [_output_from_dict(o) for o in data.get("outputs") or []]
    values["checks"] = [_check_from_dict(c) for c in data.get("checks") or []]
    return TurnRecord(**values)


def _turn_dict(turn: TurnRecord, folder: str) -> dict[str, Any]:
    data = vars(turn).copy()  # the fields, in their order
    data["tool_calls"] = [vars(call).copy() for call in turn.tool_calls]
    data["searches"] = [vars(search).copy() for search in turn.searches]
    data["code_runs"] = [vars(run).copy() for run in turn.code_runs]
    data["outputs"] = [output.to_dict(folder) for output in turn.outputs]
    data["checks"] = [vars(check).copy() for check in turn.checks]
    if turn.latency_ms is not None:
        data["latency_ms"] = round(turn.latency_ms, 1)
    return data


_CHECK_FIELDS = {f.name for f in fields(CheckResult)}
_TURN_FIELDS = {f.name for f in fields(TurnRecord)}
