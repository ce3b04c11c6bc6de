"""The transcript of one conversation: what was sent, what came back, and how each check went.

The engine fills it, the checks add their results, the writers render it. It is plain data
(dataclasses that turn into JSON), so writers and later tools never need the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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

        Strict about the type of every field it reads: raises ValueError naming the field and what is wrong
        (`turns[0].reply: expected a string, got int`) on data that is not a transcript's."""
        values = _transcript_fields(data)
        return cls(**values, turns=[_turn_from_dict(t, f"turns[{i}]") for i, t in enumerate(data.get("turns") or [])],
                   conversation_checks=[_check_from_dict(c, f"conversation_checks[{i}]")
                                        for i, c in enumerate(data.get("conversation_checks") or [])])


# what a JSON transcript's fields must hold, the shape to_dict writes: (kind, may be null, default or _REQUIRED)
_REQUIRED = object()  # a field with no default


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_KINDS: dict[str, Any] = {
    "a string": lambda v: isinstance(v, str),
    "an integer": _is_int,
    "a number": _is_number,
    "true or false": lambda v: isinstance(v, bool),
    "an object": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "a list of objects": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    "anything": lambda v: True,
}


def _got(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _fields(data: Any, shape: dict[str, tuple[str, bool, Any]], where: str) -> dict[str, Any]:
    """The fields of `shape` that `data` holds, each checked: (kind, may be null, default or _REQUIRED)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'a transcript'}: expected an object, got {_got(data)}")
    out: dict[str, Any] = {}
    for key, (kind, nullable, default) in shape.items():
        name = f"{where}.{key}" if where else key
        if key not in data:
            if default is _REQUIRED:
                raise ValueError(f"{name}: missing")
            continue
        value = data[key]
        if value is None and nullable:
            out[key] = value
        elif not _KINDS[kind](value):
            expected = f"{kind} or null" if nullable else kind
            raise ValueError(f"{name}: expected {expected}, got {_got(value)}")
        else:
            out[key] = value
    return out


def _optional(kind: str) -> tuple[str, bool, Any]:
    return kind, True, None


_TRANSCRIPT_SHAPE: dict[str, tuple[str, bool, Any]] = {
    "spec_file": ("a string", False, _REQUIRED), "name": ("a string", False, _REQUIRED),
    "backend": ("an object", False, _REQUIRED), "model": ("a string", True, _REQUIRED),
    "assistant": ("an object", True, _REQUIRED), "description": _optional("a string"),
    "tags": ("a list of strings", False, None), "assistant_id": _optional("a string"),
    "thread_id": _optional("a string"), "started_at": ("a number", False, None),
    "duration_ms": ("a number", False, None), "files": ("a list of objects", False, None),
    "vector_store_id": _optional("a string"), "case": ("a string", False, None), "error": _optional("a string"),
    "pipeline": ("a string", False, None), "conversation": _optional("an object"),
    "version": ("an integer", False, None),
    # read below, checked here
    "turns": ("a list of objects", False, None), "conversation_checks": ("a list of objects", True, None),
}
_DIGESTS_SHAPE: dict[str, tuple[str, bool, Any]] = {
    "assistant": _optional("a string"), "backend": _optional("a string"), "files": _optional("a string"),
    "turns": _optional("a list of strings"),
}
_CHECK_SHAPE: dict[str, tuple[str, bool, Any]] = {
    "type": ("a string", False, _REQUIRED), "arg": ("anything", True, _REQUIRED),
    "passed": ("true or false", False, _REQUIRED), "reason": ("a string", False, _REQUIRED),
    "where": ("a string", False, None), "implicit": ("true or false", False, None),
    "judged": ("true or false", False, None),
}
_TURN_SHAPE: dict[str, tuple[str, bool, Any]] = {
    "index": ("an integer", False, _REQUIRED), "user": ("a string", False, _REQUIRED),
    "reply": ("a string", False, None), "messages": ("a list of objects", False, None),
    "attachments": ("a list of objects", False, None), "citations": ("a list of objects", False, None),
    "images": ("a list of strings", False, None), "files": ("a list of objects", False, None),
    "run_id": _optional("a string"), "status": _optional("a string"), "last_error": _optional("an object"),
    "incomplete_details": _optional("an object"), "usage": _optional("an object"),
    "latency_ms": _optional("a number"), "error": _optional("a string"), "skipped": ("true or false", False, None),
    # read below, checked here
    "tool_calls": ("a list of objects", True, None), "searches": ("a list of objects", True, None),
    "code_runs": ("a list of objects", True, None), "outputs": ("a list of objects", True, None),
    "checks": ("a list of objects", True, None),
}
_READ_BELOW = {"turns", "conversation_checks", "tool_calls", "searches", "code_runs", "outputs", "checks"}
_TOOL_CALL_SHAPE: dict[str, tuple[str, bool, Any]] = {
    "id": ("a string", False, _REQUIRED), "name": ("a string", False, _REQUIRED),
    "arguments": ("anything", True, _REQUIRED), "output": _optional("a string"),
}
_SEARCH_SHAPE: dict[str, tuple[str, bool, Any]] = {
    "queries": ("a list of strings", False, None), "results": ("a list of objects", False, None),
}
_CODE_RUN_SHAPE: dict[str, tuple[str, bool, Any]] = {
    "input": ("a string", False, _REQUIRED), "logs": ("a string", False, None),
    "images": ("a list of strings", False, None),
}
_OUTPUT_SHAPE: dict[str, tuple[str, bool, Any]] = {
    "file_id": ("a string", False, _REQUIRED), "name": ("a string", False, _REQUIRED),
    "kind": ("a string", False, _REQUIRED), "size": _optional("an integer"), "path": _optional("a string"),
    "skipped": _optional("a string"),
}


def _transcript_fields(data: dict[str, Any]) -> dict[str, Any]:
    values = _fields(data, _TRANSCRIPT_SHAPE, "")
    if isinstance(values.get("conversation"), dict):
        _fields(values["conversation"], _DIGESTS_SHAPE, "conversation")
    return {key: value for key, value in values.items() if key not in _READ_BELOW}


def _check_from_dict(data: dict[str, Any], where: str) -> CheckResult:
    return CheckResult(**_fields(data, _CHECK_SHAPE, where))


def _output_from_dict(data: dict[str, Any], where: str) -> OutputFile:
    values = _fields(data, _OUTPUT_SHAPE, where)
    path = values.get("path")
    # `<stem>.files/<saved_as>`: one folder name, then a plain file name (see runner.report.files.safe_name)
    saved_as = path.split("/", 1)[-1] if isinstance(path, str) else None
    return OutputFile(file_id=values["file_id"], name=values["name"], kind=values["kind"], size=values.get("size"),
                      saved_as=saved_as, skipped=values.get("skipped"))


def _each(data: dict[str, Any], key: str, where: str) -> list[tuple[Any, str]]:
    return [(item, f"{where}.{key}[{i}]") for i, item in enumerate(data.get(key) or [])]


def _turn_from_dict(data: dict[str, Any], where: str) -> TurnRecord:
    values = {key: value for key, value in _fields(data, _TURN_SHAPE, where).items() if key not in _READ_BELOW}
    values["tool_calls"] = [ToolCallRecord(**_fields(c, _TOOL_CALL_SHAPE, w))
                            for c, w in _each(data, "tool_calls", where)]
    values["searches"] = [SearchRecord(**_fields(s, _SEARCH_SHAPE, w)) for s, w in _each(data, "searches", where)]
    values["code_runs"] = [CodeRunRecord(**_fields(r, _CODE_RUN_SHAPE, w))
                           for r, w in _each(data, "code_runs", where)]
    values["outputs"] = [_output_from_dict(o, w) for o, w in _each(data, "outputs", where)]
    values["checks"] = [_check_from_dict(c, w) for c, w in _each(data, "checks", where)]
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

