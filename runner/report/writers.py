"""Transcript writers: JSON and Markdown, and the files the conversation's code produced beside them, written
atomically (a crash never leaves half a file)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner.report.files import saved_files
from runner.report.transcript import CodeRunRecord, OutputFile, SearchRecord, Transcript, TurnRecord
from runner.spec.paths import output_stem


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()  # what open() would give the files, under the user's umask


_made: set[Path] = set()  # folders this process has made (or found): a batch writes thousands of files in few
_numbers = itertools.count()


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """`text` with each lone surrogate (valid in JSON as `"\\ud800"`, not encodable in UTF-8) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def encoded(text: str) -> bytes:
    """`text` as UTF-8, lone surrogates written as U+FFFD: a writer never fails on what a model or file said."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return without_surrogates(text).encode("utf-8")


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename (lone surrogates as
    U+FFFD)."""
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(encoded(text))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temporary(path: Path) -> tuple[int, str]:
    """A new file beside `path`, open for writing, named for this process alone (helpers write in parallel)."""
    folder = path.parent
    if folder not in _made:
        folder.mkdir(parents=True, exist_ok=True)
        _made.add(folder)
    remade = False
    while True:
        tmp = f"{folder}{os.sep}.{path.name}.{os.getpid()}.{next(_numbers)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), _FILE_MODE), tmp
        except FileExistsError:  # left by an earlier process with this pid: take the next number
            continue
        except FileNotFoundError:
            # the folder was removed since: make it again, once; a folder that "exists" yet takes no new file
            # (/proc) would otherwise loop here for ever
            if remade:
                raise
            remade = True
            folder.mkdir(parents=True, exist_ok=True)


def transcript_stem(out_dir: Path, spec_file: str, case: str = "") -> Path:
    """Where a conversation's transcripts go: its output stem (see runner.spec.paths) under out_dir."""
    return out_dir / output_stem(spec_file, case)


def to_json(transcript: Transcript) -> str:
    """The transcript as pretty JSON text."""
    return json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n"


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in (text or "").splitlines()) or "> *(empty)*"


def _code(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "`" + text.replace("`", "'") + "`"


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


SEARCH_TEXT_SHOWN = 160  # characters of each search result's text in the Markdown transcript (the JSON has it all)


def _excerpt(text: str) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= SEARCH_TEXT_SHOWN else line[: SEARCH_TEXT_SHOWN - 1] + "…"


def _search_lines(search: SearchRecord) -> list[str]:
    """One file search: its queries, then each result's file, score and the start of its text."""
    queries = ", ".join(_code(q) for q in search.queries)
    count = f"{len(search.results)} result{'' if len(search.results) == 1 else 's'}"
    lines = [f"- file search {queries} → {count}" if queries else f"- file search → {count}"]
    for result in search.results:
        score = result.get("score")
        shown = f" ({score:.2f})" if isinstance(score, int | float) else ""
        name = result.get("file_name") or result.get("file_id")
        lines.append(f"  - {_code(str(name))}{shown}: {_code(_excerpt(result.get('text') or ''))}")
    return lines


def _retrieval_lines(turn: TurnRecord) -> list[str]:
    """What the turn attached and what its run's searches found, before the reply."""
    lines = [f"- attachment {_code(a.get('path') or a.get('file_name') or '')}" for a in turn.attachments]
    for search in turn.searches:
        lines += _search_lines(search)
    return lines + [""] if lines else []


def _fenced(text: str, language: str = "") -> list[str]:
    """`text` as a fenced code block, its fence longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, *(text.rstrip("\n").split("\n") if text else []), fence]


def _link(output: OutputFile, folder: str) -> str:
    """Where a saved file is, relative to the Markdown transcript, as a link target."""
    return quote(f"{folder}/{output.saved_as}")


def _output_lines(output: OutputFile | None, file_id: str, folder: str) -> list[str]:
    """An image embedded, a file linked, or why it was not saved."""
    if output is None or output.saved_as is None:
        name = output.name if output is not None else file_id
        why = output.skipped if output is not None and output.skipped else "not saved"
        return [f"- {'image' if output is None or output.kind == 'image' else 'file'} {_code(name)}: {why}"]
    label = output.name.replace("]", "").replace("[", "")
    if output.kind == "image":
        return [f"![{label}]({_link(output, folder)})"]
    return [f"- file [{label}]({_link(output, folder)})"]


def _code_lines(turn: TurnRecord, folder: str) -> list[str]:
    """Each code run of the turn: its code and logs as code blocks, then the images it showed."""
    outputs = {o.file_id: o for o in turn.outputs}
    lines: list[str] = []
    for number, run in enumerate(turn.code_runs, 1):
        lines += _code_run_lines(number, run, outputs, folder)
    return lines


def _code_run_lines(number: int, run: CodeRunRecord, outputs: dict[str, OutputFile], folder: str) -> list[str]:
    lines = [f"**Code run {number}**", "", *_fenced(run.input, "python"), ""]
    lines += ["Logs:", "", *_fenced(run.logs), ""] if run.logs else ["*No logs.*", ""]
    for file_id in run.images:
        lines += [*_output_lines(outputs.get(file_id), file_id, folder), ""]
    return lines


def _reply_output_lines(turn: TurnRecord, folder: str) -> list[str]:
    """What the reply carries of the code's products: its images (those no code run showed) and the files it
    links, each embedded, linked, or with the reason it was not saved."""
    outputs = {o.file_id: o for o in turn.outputs}
    shown = {i for run in turn.code_runs for i in run.images}
    lines: list[str] = []
    for file_id in dict.fromkeys(turn.images):
        if file_id not in shown:  # an image a code run showed is shown there
            lines += [*_output_lines(outputs.get(file_id), file_id, folder), ""]
    files = [line for f in dict.fromkeys(f["file_id"] for f in turn.files) if f not in turn.images
             for line in _output_lines(outputs.get(f), f, folder)]
    return lines + (files + [""] if files else [])


def _citation_line(turn: TurnRecord) -> list[str]:
    if not turn.citations:
        return []
    cited = ", ".join(f"{_code(str(c.get('file_name') or c.get('file_id')))} {_code(c.get('text') or '')}"
                      for c in turn.citations)
    return [f"Citations: {cited}", ""]


def to_markdown(transcript: Transcript) -> str:
    """A readable rendering of the transcript for people and for diffs."""
    t = transcript
    mark = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR"}[t.verdict]
    lines = [f"# {t.name} — {mark}", ""]
    if t.description:
        lines += [t.description, ""]
    lines += [
        f"- spec: `{t.spec_file}`",
        f"- backend: {t.backend.get('kind')}" + (f" ({t.backend['base_url']})" if t.backend.get("base_url") else ""),
        f"- model: `{t.model}`" if t.model else f"- assistant: `{t.assistant_id}`",
    ]
    if t.files:
        lines.append("- files: " + ", ".join(_code(f.get("path") or f.get("file_name") or "") for f in t.files))
    if t.started_at:  # the stable view has no timings
        # from the value the JSON keeps (a tenth of a millisecond), so a transcript read back renders the same
        lines.append(f"- duration: {round(t.duration_ms, 1):.0f} ms")
    if t.error:
        lines += [f"- error: {t.error}"]
    folder = t.files_folder if any(turn.outputs for turn in t.turns) else ""
    for turn in t.turns:
        lines += ["", f"## Turn {turn.index + 1}", "", "**User**", "", _quote(turn.user), ""]
        if turn.skipped:
            lines += ["*Not run: the conversation stopped at an earlier turn.*"]
            continue
        for call in turn.tool_calls:
            lines += [f"- tool call {_code(call.name)} arguments {_code(call.arguments)} → output {_code(call.output)}"]
        if turn.tool_calls:
            lines += [""]
        lines += _retrieval_lines(turn)
        lines += _code_lines(turn, folder)
        lines += ["**Assistant**", "", _quote(turn.reply), ""]
        lines += _reply_output_lines(turn, folder)
        lines += _citation_line(turn)
        facts = [f"run `{turn.run_id}`" if turn.run_id else "no run", f"status **{turn.status}**"]
        if turn.latency_ms is not None:
            facts.append(f"{round(turn.latency_ms, 1):.0f} ms")
        if turn.usage:
            facts.append(f"{turn.usage.get('total_tokens')} tokens")
        lines += [" · ".join(facts)]
        if turn.last_error:
            lines += ["", f"Run error: {turn.last_error.get('code')}: {turn.last_error.get('message')}"]
        if turn.error:
            lines += ["", f"Runner error: {turn.error}"]
        if turn.checks:
            lines += ["", "| check | result | detail |", "| --- | --- | --- |"]
            for c in turn.checks:
                name = _cell(f"{c.type}: {_code(c.arg)}" + (" (implicit)" if c.implicit else ""))
                detail = _cell(c.reason)
                result = "pass" if c.passed else "**FAIL**" if c.judged else "not judged"
                lines += [f"| {name} | {result} | {detail} |"]
    return "\n".join(lines) + "\n"


def write_transcript(out_dir: Path, transcript: Transcript, *, stable: bool = False) -> tuple[Path, Path]:
    """Write the JSON and Markdown transcripts (in the stable view when asked), with the files the conversation's
    code produced in `<stem>.files/` beside them; return the transcripts' paths."""
    if stable:
        from runner.report.stable import stable_copy

        transcript = stable_copy(transcript)
    stem = transcript_stem(out_dir, transcript.spec_file, transcript.case)
    # not with_suffix: a stem like greet.v1 would lose its .v1 and collide with greet.v2
    json_path, md_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
    produced: list[tuple[Path, str | bytes]] = list(saved_files(json_path, transcript))
    atomic_write_all([*produced, (md_path, to_markdown(transcript)), (json_path, to_json(transcript))])
    return json_path, md_path


def atomic_write_all(files: list[tuple[Path, str | bytes]]) -> None:
    """Write several files so that they appear together: each is written whole to a temporary file first,
    then all are renamed in place one after the other, with SIGINT and SIGTERM held back between the renames
    (only SIGKILL can come between them; the last file named is the one readers look for)."""
    import signal

    written: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            fd, tmp = _temporary(path)
            written.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(encoded(text) if isinstance(text, str) else text)
        held = _hold_signals(signal)
        try:
            while written:
                tmp, path = written[0]
                os.replace(tmp, path)
                written.pop(0)
        finally:
            if held is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
    finally:
        for tmp, _ in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _hold_signals(signal: Any) -> Any:
    """Block SIGINT and SIGTERM in this thread; the previous mask, or None where there is no such thing."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
