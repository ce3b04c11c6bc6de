"""Judging recorded transcripts again with their specs' current expectations: no backend, no model, no network.

The path is transcript → checks → writers: JSON transcripts are read back (`Transcript.from_dict`), matched to
the spec conversation they recorded, judged by the engine's own checks (`runner.expect.judge`), and written back
in place. It never imports the engine. A grader's model calls (`llm_rubric`) are replayed from the
conversation's cassette, read-only; one no recording answers leaves its check not judged rather than failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.expect import CannotJudge, CheckContext, judge
from runner.expect.grader import Grader, GradingError
from runner.redact import Redactor, credible
from runner.report.diff import NotTranscript, produced_file
from runner.report.transcript import TRANSCRIPT_VERSION, Transcript
from runner.report.writers import atomic_write_all, to_json, to_markdown
from runner.spec.fingerprint import conversation_change
from runner.spec.model import Spec
from runner.spec.paths import inside, output_stem
from runner.spec.pipelines import spec_case

NOT_REJUDGED = "not re-judged"
# the case parts a run adds to a spec's own case: `--pipeline both` first, then `--repeat`
# the variables whose values a run keeps out of what it writes (runner.engine.backend.secret_values)
_KEY_VARIABLES = ("OPENAI_API_KEY", "RUNNER_CHAT_API_KEY", "RUNNER_EMBEDDINGS_API_KEY", "RUNNER_API_KEY")


@dataclass
class Recorded:
    """One JSON transcript read from the folder: where it is, what it holds, and how it was written."""

    path: Path
    transcript: Transcript
    verdict: str  # the verdict it was written with
    stable: bool  # written in the stable view (no timestamps): written back so


@dataclass
class Unreadable:
    """A JSON file of the folder that is not a transcript that can be read back, and why."""

    path: Path
    message: str
    transcript: bool = True  # False: valid JSON that is no transcript (a summary beside them): no error
    note: bool = False  # shown as a warning, with no error (a symbolic link skipped)


@dataclass
class Match:
    """What becomes of one transcript: `judge` (with `spec`), `needs_run` or `gone` (with `why`), `other` (its
    spec is not among those given), or `unreadable` (with `why`: its data made matching, judging or rendering it
    fail)."""

    recorded: Recorded
    status: str
    spec: Spec | None = None
    why: str = ""


@dataclass
class Judged:
    """A transcript judged again: its verdict before and now, and where it was written back (or why not)."""

    recorded: Recorded
    before: str
    write_error: str | None = None

    @property
    def transcript(self) -> Transcript:
        """The transcript with its new verdicts."""
        return self.recorded.transcript


@dataclass
class Scope:
    """The specs a re-judge may use: those loaded from the SPECS given (None: each transcript's own spec file),
    and the files and folders named, which a gone spec may have been in."""

    specs: list[Spec] | None = None
    named: list[Path] = field(default_factory=list)


# a JSON object with any of these at its top level is taken for a transcript, and must have them all: one missing is
# reported, never skipped silently (a summary, with its version, totals and conversations, has none of them)
_TRANSCRIPT_KEYS = ("spec_file", "name", "verdict", "turns")


def _load(path: Path) -> dict[str, Any]:
    """The JSON transcript in `path`; NotTranscript for other JSON, ValueError (naming the field) for a malformed
    one, OSError when it cannot be read."""
    data = json.loads(path.read_text(encoding="utf-8"))  # UnicodeDecodeError and JSONDecodeError are ValueErrors
    if not isinstance(data, dict) or not data.keys() & set(_TRANSCRIPT_KEYS):
        raise NotTranscript("not a transcript (no spec_file, name, verdict and turns)")
    missing = [key for key in _TRANSCRIPT_KEYS if key not in data]
    if missing:
        raise ValueError(f"{', '.join(missing)}: missing")
    if not isinstance(data["verdict"], str):
        raise ValueError(f"verdict: expected a string, got {type(data['verdict']).__name__}")
    return data


def _linked(folder: Path, path: Path) -> bool:
    """Whether `path`, or a folder between `folder` and it, is a symbolic link."""
    return path.is_symlink() or any(parent.is_symlink() for parent in path.parents if folder in parent.parents)


def outside(spec_file: str, here: Path | None = None) -> bool:
    """Whether a transcript's spec file is absolute or leads outside the working folder (`..`, a symbolic link)."""
    base = (here or Path.cwd()).resolve()
    return os.path.isabs(spec_file) or not inside(base / spec_file, base)


def read_transcripts(folder: Path) -> tuple[list[Recorded], list[Unreadable]]:
    """Every JSON transcript under `folder` (the files the code produced, saved beside them, and symbolic links left
    out), and the JSON files that could not be read back as transcripts: malformed, written by another version, of
    a spec outside the working folder, or a second transcript of a conversation already found."""
    found: list[Recorded] = []
    problems: list[Unreadable] = []
    seen: dict[tuple[str, str], Path] = {}
    for path in sorted(folder.rglob("*.json")):
        if not path.is_file() or produced_file(folder, path):
            continue
        if _linked(folder, path):
            problems.append(Unreadable(path, "a symbolic link: skipped (a transcript is judged where it is)",
                                       transcript=False, note=True))
            continue
        try:
            data = _load(path)
            transcript = Transcript.from_dict(data)
        except NotTranscript as exc:
            problems.append(Unreadable(path, str(exc), transcript=False))
            continue
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            problems.append(Unreadable(path, _read_error(exc)))
            continue
        if transcript.version != TRANSCRIPT_VERSION:
            problems.append(Unreadable(path, f"written by another version (transcript version {transcript.version}; "
                                             f"this runner reads version {TRANSCRIPT_VERSION})"))
            continue
        if outside(transcript.spec_file):
            problems.append(Unreadable(path, f"its spec_file {transcript.spec_file} is outside the working folder "
                                             f"({Path.cwd()}): not loaded"))
            continue
        key = (os.path.normpath(transcript.spec_file), transcript.case)
        if key in seen:
            problems.append(Unreadable(path, f"the same conversation ({transcript.key}) as {seen[key]}: "
                                             "not judged twice"))
            continue
        seen[key] = path
        found.append(Recorded(path, transcript, str(data["verdict"]), not data.get("started_at")))
    return found, problems


def _read_error(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, ValueError):
        return f"not a transcript this runner can read back: {exc}"
    return f"not a transcript this runner can read back ({type(exc).__name__}: {exc})"


def _failed(what: str, exc: BaseException) -> str:
    """A transcript that made judging or rendering raise: what the data would not allow, never a traceback."""
    return f"cannot be {what} ({type(exc).__name__}: {exc})"


def spec_files(recorded: Iterable[Recorded]) -> list[str]:
    """The spec files the transcripts were recorded from that are still there, each once, in order."""
    return [file for file in dict.fromkeys(r.transcript.spec_file for r in recorded) if os.path.isfile(file)]


def base_case(case: str) -> tuple[str, bool]:
    """The spec's own case of a run's case (`lang=fr,pipeline=responses,repeat=2` -> `lang=fr`), and whether it
    was a repeat."""
    as_written = spec_case(case, repeat=False, pipeline=False)  # normalised only: what a repeat part changes
    return spec_case(case), spec_case(case, pipeline=False) != as_written


def _within(spec_file: str, named: Sequence[Path]) -> bool:
    """Whether a spec file is one of the paths named, or lies in one of the folders named."""
    where = Path(spec_file).resolve()
    return any(where == path or path in where.parents for path in named)


def match(recorded: Sequence[Recorded], scope: Scope, loaded: Sequence[Spec]) -> list[Match]:
    """Each transcript with the spec conversation it recorded (`loaded`: the specs in scope, with their cases)."""
    by_case = {(output_stem(spec.file), spec.case): spec for spec in loaded}
    stems = {output_stem(spec.file) for spec in loaded}
    named = [path.resolve() for path in scope.named]
    out = []
    for item in recorded:
        try:
            out.append(_match(item, scope, by_case, stems, named))
        except Exception as exc:  # data the reading let through: that transcript alone is unreadable
            out.append(Match(item, "unreadable", why=_failed("matched to its spec", exc)))
    return out


def _match(item: Recorded, scope: Scope, by_case: Mapping[tuple[Path, str], Spec], stems: set[Path],
           named: Sequence[Path]) -> Match:
    transcript = item.transcript
    stem = output_stem(transcript.spec_file)
    if stem not in stems:
        if scope.specs is not None and not _within(transcript.spec_file, named):
            return Match(item, "other")
        if not os.path.isfile(transcript.spec_file):
            return Match(item, "gone", why=f"its spec {transcript.spec_file} is gone")
        return Match(item, "gone", why=f"its spec {transcript.spec_file} is not among the specs given")
    spec = by_case.get((stem, transcript.case))
    repeats = None
    if spec is None:
        case, repeat = base_case(transcript.case)
        spec = by_case.get((stem, case))
        repeats = case if repeat else None
    if spec is None:
        return Match(item, "gone", why=f"its case {transcript.case!r} is no longer in {transcript.spec_file}")
    # the conversation as the run ran it: its case, pipeline and repeat (a repeat replays its case's cassette)
    spec = dataclasses.replace(spec, case=transcript.case, pipeline=transcript.pipeline, repeats=repeats)
    change = conversation_change(transcript, spec)
    if change is not None:
        return Match(item, "needs_run", spec, change)
    return Match(item, "judge", spec)


def unjudgeable(matches: Iterable[Match]) -> list[Unreadable]:
    """The transcripts whose data made matching or judging them fail, as unreadable."""
    return [Unreadable(m.recorded.path, m.why) for m in matches if m.status == "unreadable"]


class ReplayGrader(Grader):
    """The grader with its model calls answered by the conversation's cassette alone: a call no recording answers
    leaves the check not judged (CannotJudge), never failed or passed."""

    async def grade(self, rubric: str, user: str, reply: str, model: str | None) -> tuple[float, str]:
        """(score, reason), as recorded; CannotJudge when the recording has no answer for the call."""
        from runner.record.cassettes import current_session

        session = current_session()
        before = len(session.mismatches) if session is not None else 0
        try:
            return await super().grade(rubric, user, reply, model)
        except GradingError:
            if session is not None and len(session.mismatches) > before:
                raise CannotJudge(f"{NOT_REJUDGED}: no recording answers its grader call "
                                  f"({session.mismatches[-1][1]})") from None
            raise


def secrets(backend: Mapping[str, Any], extra_env: Sequence[str]) -> dict[str, str]:
    """The secrets a run of this backend keeps out of what it writes, by variable (as runner.engine.backend)."""
    names = [*_KEY_VARIABLES, *extra_env]
    if backend.get("api_key_env"):
        names.append(str(backend["api_key_env"]))
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def _redactor(backend: Mapping[str, Any], extra_env: Sequence[str]) -> Redactor:
    values = secrets(backend, extra_env)
    return Redactor({name: value for name, value in values.items() if name in extra_env or credible(value)})


class _Graders:
    """One replaying grader per set of offline rules (the providers the conversation's backend offered)."""

    def __init__(self) -> None:
        self.graders: dict[str, Grader] = {}
        self.live: Any = None

    def __call__(self, spec: Spec, backend: Mapping[str, Any]) -> Grader:
        from runner.expect.grader import live_settings
        from runner.server.providers import ProviderSet

        rules = spec.backend.rules if backend.get("kind") != "remote" else None  # a remote run's grader had none
        key = json.dumps(rules, sort_keys=True, default=str)
        if key not in self.graders:
            if self.live is None:
                self.live = live_settings(os.environ)
            self.graders[key] = ReplayGrader(ProviderSet(rules=rules, live=self.live),
                                             os.environ.get("RUNNER_GRADER_MODEL"))
        return self.graders[key]


async def judge_again(matches: Sequence[Match], cassettes: Path, secret_env: Sequence[str] = ()) -> list[Judged]:
    """Judge every matched transcript again with its spec's current checks, in place; a grader's calls replay from
    the conversation's cassette (record mode none: nothing is recorded, nothing leaves the process)."""
    from runner.record.cassettes import cassette_for, recording

    graders = _Graders()
    out = []
    for item in matches:
        if item.status != "judge" or item.spec is None:
            continue
        spec, transcript = item.spec, item.recorded.transcript
        before = item.recorded.verdict
        try:
            transcript.conversation_checks = []  # a conversation check the spec no longer has must not linger
            context = CheckContext(spec_file=spec.file, variables=spec.vars,
                                   grader=graders(spec, transcript.backend))
            path, _ = cassette_for(cassettes, spec, "none")
            with recording(path, "none", spec.key, secrets(transcript.backend, secret_env)):
                await judge(spec, transcript, context)
            # as a run does: after the checks judged the real reply, before anything is written or printed
            _redactor(transcript.backend, secret_env).data(transcript)
        except Exception as exc:  # data the reading let through: that transcript alone is unreadable
            item.status, item.why = "unreadable", _failed("judged", exc)
            continue
        out.append(Judged(item.recorded, before))
    return out


def rejudge(matches: Sequence[Match], cassettes: Path, secret_env: Sequence[str] = ()) -> list[Judged]:
    """`judge_again` from synchronous code."""
    return asyncio.run(judge_again(matches, cassettes, secret_env))


def _rendered(judged: Judged, stable: bool) -> list[tuple[Path, str | bytes]]:
    """The Markdown and JSON a re-judged transcript is written back as, over the files it was read from, in the
    stable view when it was written so (or `stable`); the files its code produced stay as they are."""
    from runner.report.stable import stable_copy

    transcript = judged.transcript
    if stable or judged.recorded.stable:
        transcript = stable_copy(transcript)
    json_path = judged.recorded.path
    md_path = json_path.with_name(json_path.name.removesuffix(".json") + ".md")
    return [(md_path, to_markdown(transcript)), (json_path, to_json(transcript))]


def write_back(judged: Sequence[Judged], stable: bool = False) -> tuple[list[Judged], list[Unreadable]]:
    """Write the re-judged transcripts back, each JSON and Markdown together (atomically), once every one of them
    is rendered: a transcript that cannot be rendered is left as it was and returned as unreadable (with the
    others written), so no failure leaves part of the folder rewritten and the rest not. Returns the transcripts
    still judged (a failure to write is recorded on its `Judged`, not raised) and those that could not be rendered."""
    rendered: list[tuple[Judged, list[tuple[Path, str | bytes]]]] = []
    problems = []
    for item in judged:
        try:
            rendered.append((item, _rendered(item, stable)))
        except Exception as exc:  # data the reading let through: that transcript alone is unreadable
            problems.append(Unreadable(item.recorded.path, _failed("rendered", exc)))
    for item, files in rendered:
        try:
            atomic_write_all(files)
        except OSError as exc:
            item.write_error = f"cannot write the transcript {item.recorded.path}: {exc}"
    return [item for item, _ in rendered], problems
