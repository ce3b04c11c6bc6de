"""JUnit XML for CI: one test case per conversation, its failed checks in the failure's body.

The shape is the common denominator of the readers in use (GitHub Actions reporters such as
dorny/test-reporter and mikepenz/action-junit-report, GitLab, Jenkins): a `<testsuites>` root holding
one `<testsuite name="runner">`, with `tests`, `failures`, `errors`, `skipped` and `time` on both.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from runner.report.summary import failure_entries
from runner.report.transcript import Transcript
from runner.report.writers import atomic_write

SUITE_NAME = "runner"

# what XML 1.0 allows: tab, newline, carriage return, and the planes minus surrogates, U+FFFE and U+FFFF
_FORBIDDEN = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MESSAGE_LIMIT = 500  # the message is a title; the whole story is in the body


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry (NUL, most C0 controls, lone surrogates, U+FFFE/F)."""
    return _FORBIDDEN.sub("", text)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _classname(spec_file: str) -> str:
    """`specs/sub/greet.yaml` -> `specs.sub.greet`: the spec's path, dotted like a Java class."""
    path = PurePosixPath(spec_file.replace("\\", "/"))
    if path.suffix in (".yaml", ".yml"):
        path = path.with_suffix("")
    parts = [p for p in path.parts if p not in ("/", ".", "..")]
    return ".".join(parts) or spec_file


def _entry_line(entry: dict[str, object]) -> str:
    if entry["kind"] == "not_run":
        return f"turn {entry['turn']} and later: {entry['reason']}"
    if entry["kind"] == "error":
        return f"turn {entry['turn']}: {entry['reason']}"
    where = f" [{entry['where']}]" if entry["where"] else ""
    scope = "conversation" if entry["turn"] is None else f"turn {entry['turn']}"
    return f"{scope} {entry['check']}{where}: {entry['reason']}"


def _first_line_number(transcript: Transcript) -> int | None:
    """The spec line of the first failed check, when it lies in the spec file itself."""
    for _, check in transcript.failures():
        if check is None or not check.where:
            continue
        parts = check.where.rsplit(":", 2)  # file:line:col
        if len(parts) == 3 and parts[0] == transcript.spec_file and parts[1].isdigit():
            return int(parts[1])
    return None


def _testcase(suite: ET.Element, transcript: Transcript, transcript_path: Path | None) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": xml_safe(_classname(transcript.spec_file)),
        "name": xml_safe(transcript.name),
        "file": xml_safe(transcript.spec_file),
        "time": _seconds(transcript.duration_ms / 1000),
    })
    verdict = transcript.verdict
    if verdict == "passed":
        return
    entries = failure_entries(transcript)
    lines = [_entry_line(e) for e in entries]
    if verdict == "error":
        message = transcript.error or ""  # never empty: a runner error is what makes the verdict `error`
        if not any(e["kind"] == "error" for e in entries):  # a setup error: no turn states it
            lines.insert(0, message)
        tag, kind = "error", "runner"
    else:
        message = lines[0] if lines else "no turn ran"
        tag, kind = "failure", "check"
    line_number = _first_line_number(transcript)
    if line_number is not None:
        case.set("line", str(line_number))  # mikepenz/action-junit-report annotates this line
    if transcript_path is not None:
        lines.append(f"transcript: {transcript_path.as_posix()}")
    outcome = ET.SubElement(case, tag, {"message": xml_safe(_one_line(message)), "type": kind})
    outcome.text = xml_safe("\n".join(lines))


@dataclass(frozen=True)
class NotRun:
    """A conversation of the batch that never started (Ctrl-C, --max-failures), and why."""

    spec_file: str
    name: str
    reason: str


def to_junit(transcripts: list[Transcript], seconds: float, *,
             transcript_paths: dict[str, Path] | None = None, not_run: Sequence[NotRun] = ()) -> str:
    """The run as JUnit XML text: a test case per conversation, failed checks listed in `<failure>`.

    A conversation whose verdict is `error` (the runner could not finish it) gets `<error>` instead, and one
    that never started (`not_run`) `<skipped>`, so the report still lists the whole batch.
    `transcript_paths` maps a conversation (Transcript.key) to its JSON transcript, named at the end of the body.
    """
    paths = transcript_paths or {}
    counts = {
        "tests": str(len(transcripts) + len(not_run)),
        "failures": str(sum(t.verdict == "failed" for t in transcripts)),
        "errors": str(sum(t.verdict == "error" for t in transcripts)),
        "skipped": str(len(not_run)),
        "time": _seconds(seconds),
    }
    root = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE_NAME, **counts})
    started = [t.started_at for t in transcripts if t.started_at]  # the stable view has none
    if started:
        suite.set("timestamp", datetime.fromtimestamp(min(started), UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    for transcript in transcripts:
        _testcase(suite, transcript, paths.get(transcript.key))
    for skipped in not_run:
        case = ET.SubElement(suite, "testcase", {"classname": xml_safe(_classname(skipped.spec_file)),
                                                 "name": xml_safe(skipped.name), "file": xml_safe(skipped.spec_file),
                                                 "time": _seconds(0)})
        ET.SubElement(case, "skipped", {"message": xml_safe(skipped.reason)})
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, transcripts: list[Transcript], seconds: float,
                transcript_paths: dict[str, Path] | None = None, not_run: Sequence[NotRun] = ()) -> None:
    """Write the JUnit XML of the run to `path`, atomically (see `to_junit`)."""
    atomic_write(path, to_junit(transcripts, seconds, transcript_paths=transcript_paths, not_run=not_run))
