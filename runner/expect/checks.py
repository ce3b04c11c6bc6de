"""Expectation checks: one registry mapping a check type to the function that judges a turn.

Each check returns (passed, reason); the reason always says what was expected and what came back.
Checks may be async (the grader calls a model); composite checks (`not`, `all`, `any`) judge the checks
they hold. Conversation-level checks judge a turn-shaped summary of the whole conversation.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from runner.expect.grader import Grader, GradingError
from runner.report.transcript import (
    CheckResult,
    CodeRunRecord,
    OutputFile,
    SearchRecord,
    ToolCallRecord,
    Transcript,
    TurnRecord,
)
from runner.spec.model import Check, Spec, Turn

Outcome = tuple[bool, str]
CheckFn = Callable[[Any, TurnRecord, "CheckContext"], Outcome | Awaitable[Outcome]]
CHECKS: dict[str, CheckFn] = {}
COMPOSITE = ("not", "all", "any")


@dataclass
class CheckContext:
    """What checks may need besides the turn: the spec (its vars, its folder) and a grader."""

    spec_file: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    grader: Grader | None = None


def check(name: str) -> Callable[[CheckFn], CheckFn]:
    """Register a check function under its spec name."""

    def register(fn: CheckFn) -> CheckFn:
        CHECKS[name] = fn
        return fn

    return register


def _show(text: str, limit: int = 300) -> str:
    shown = json.dumps(text, ensure_ascii=False)
    return shown if len(shown) <= limit else shown[: limit - 4] + '..."'


def turn_view(turn: TurnRecord) -> dict[str, Any]:
    """A turn as plain data, for `jinja` expressions and `python` check functions."""
    return {
        "index": turn.index, "user": turn.user, "reply": turn.reply, "status": turn.status,
        "tool_calls": [{"name": c.name, "arguments": c.arguments, "output": c.output} for c in turn.tool_calls],
        "usage": turn.usage or {}, "latency_ms": turn.latency_ms, "messages": turn.messages,
        "run_id": turn.run_id, "last_error": turn.last_error, "error": turn.error,
        "searches": [{"queries": s.queries, "results": s.results} for s in turn.searches],
        "citations": turn.citations, "attachments": turn.attachments,
        "code_runs": [{"input": r.input, "logs": r.logs, "images": r.images, "error": code_error(r)}
                      for r in turn.code_runs],
        "images": turn.images, "files": turn.files,
        "outputs": [{"file_id": o.file_id, "name": o.name, "kind": o.kind, "size": o.size, "saved": o.saved_as
                     is not None} for o in turn.outputs],
    }


@check("contains")
def _contains(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    return arg in turn.reply, f"expected the reply to contain {_show(arg)}; reply: {_show(turn.reply)}"


@check("not_contains")
def _not_contains(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    return arg not in turn.reply, f"expected the reply not to contain {_show(arg)}; reply: {_show(turn.reply)}"


@check("icontains")
def _icontains(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    ok = arg.casefold() in turn.reply.casefold()
    return ok, f"expected the reply to contain {_show(arg)} (ignoring case); reply: {_show(turn.reply)}"


@check("equals")
def _equals(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    return turn.reply.strip() == arg.strip(), f"expected the reply to equal {_show(arg)}; reply: {_show(turn.reply)}"


@check("starts_with")
def _starts_with(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    ok = turn.reply.lstrip().startswith(arg)
    return ok, f"expected the reply to start with {_show(arg)}; reply: {_show(turn.reply)}"


@check("regex")
def _regex(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    ok = re.search(arg, turn.reply) is not None
    return ok, f"expected the reply to match /{arg}/; reply: {_show(turn.reply)}"


@check("json")
def _json(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    try:
        value = json.loads(turn.reply)
    except ValueError as exc:
        return False, f"expected the reply to be JSON ({exc}); reply: {_show(turn.reply)}"
    schema = arg.get("schema") if isinstance(arg, dict) else None
    if schema is None:
        return True, "the reply is valid JSON"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return True, "the reply is JSON matching the schema"
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return False, (f"expected the reply's JSON to match the schema: at {where}: {error.message}; "
                   f"reply: {_show(turn.reply)}")


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            _subset(e, a) for e, a in zip(expected, actual, strict=True))
    # JSON tells true from 1, Python does not: compare booleans by type too
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return bool(expected == actual)


@check("tool_called")
def _tool_called(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    name = arg if isinstance(arg, str) else arg["name"]
    wanted = None if isinstance(arg, str) else arg.get("arguments")
    calls = [c for c in turn.tool_calls if c.name == name]
    made = ", ".join(f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in turn.tool_calls) or "none"
    if not calls:
        return False, f"expected a call to {name}; calls made: {made}"
    if wanted is None:
        return True, f"{name} was called"
    ok = any(_subset(wanted, c.arguments) for c in calls)
    wanted_text = json.dumps(wanted, ensure_ascii=False)
    return ok, f"expected a call to {name} with arguments including {wanted_text}; calls made: {made}"


def _score(result: dict[str, Any]) -> str:
    score = result.get("score")
    return f"{score:.2f}" if isinstance(score, int | float) else "no score"


def _found(turn: TurnRecord) -> str:
    """What the turn's searches found, for a failure's reason: each result's file and score."""
    if not turn.searches:
        return "no file search ran in this turn"
    shown = []
    for search in turn.searches:
        queries = ", ".join(_show(q, 80) for q in search.queries)
        results = ", ".join(f"{r.get('file_name') or r.get('file_id')} ({_score(r)})" for r in search.results
                            ) or "no results"
        shown.append(f"{queries} -> {results}" if queries else results)
    return f"the searches found: {'; '.join(shown)}"


@check("file_search")
def _file_search(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    if arg is True:
        count = len(turn.searches)
        return count > 0, f"{count} file search(es) ran" if count else "expected a file search; none ran"
    text, name = arg.get("contains"), arg.get("file")
    results = [r for s in turn.searches for r in s.results]
    hits = [r for r in results if (text is None or str(text) in (r.get("text") or ""))
            and (name is None or r.get("file_name") == name)]
    wanted = " ".join(part for part in (f"from {name}" if name is not None else "",
                                        f"containing {_show(str(text))}" if text is not None else "") if part)
    if hits:
        first = hits[0]
        return True, f"a file search found a result {wanted}: {first.get('file_name')} ({_score(first)})"
    return False, f"expected a file search result {wanted}; {_found(turn)}"


@check("cites")
def _cites(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    cited = [c.get("file_name") or c.get("file_id") for c in turn.citations]
    shown = ", ".join(dict.fromkeys(str(c) for c in cited)) or "no file"
    if arg is True:
        return bool(cited), f"expected the reply to cite a file; it cites {shown}"
    return arg in cited, f"expected the reply to cite {arg}; it cites {shown}"


# what ends a code run in an error: Python's traceback, or the code interpreter's sentence naming a limit
_CODE_ERROR = re.compile(r"Traceback \(most recent call last\)|^Execution stopped: ", re.MULTILINE)


def code_error(run: CodeRunRecord) -> bool:
    """True when the code run ended in an error: its logs hold a Python traceback, or the sentence of a limit that
    stopped it (`Execution stopped: the code reached ...`)."""
    return _CODE_ERROR.search(run.logs) is not None


def _ran(turn: TurnRecord) -> str:
    """What the turn's code runs were, for a failure's reason: each one's code, logs and outcome, shortened."""
    if not turn.code_runs:
        return "no code ran in this turn"
    shown = [f"{i}: code {_show(r.input, 120)} -> {'error' if code_error(r) else 'ok'}, logs {_show(r.logs, 160)}"
             for i, r in enumerate(turn.code_runs, 1)]
    return f"the code runs were: {'; '.join(shown)}"


def _code_matches(run: CodeRunRecord, arg: dict[str, Any]) -> bool:
    return (("contains" not in arg or str(arg["contains"]) in run.input)
            and ("output_contains" not in arg or str(arg["output_contains"]) in run.logs)
            and ("error" not in arg or code_error(run) is bool(arg["error"])))


@check("code")
def _code(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    runs = turn.code_runs
    if arg is True:
        return bool(runs), f"{len(runs)} code run(s)" if runs else "expected code to run; none ran"
    if set(arg) == {"error"} and arg["error"] is False:  # alone, it speaks of every run of the turn
        failed = [r for r in runs if code_error(r)]
        ok = bool(runs) and not failed
        return ok, (f"{len(runs)} code run(s), none ended in an error" if ok
                    else f"expected code to run without an error; {_ran(turn)}")
    wanted = " and ".join(part for part in (
        f"code containing {_show(str(arg['contains']))}" if "contains" in arg else "",
        f"logs containing {_show(str(arg['output_contains']))}" if "output_contains" in arg else "",
        ("an error" if arg["error"] else "no error") if "error" in arg else "") if part)
    hits = [i for i, r in enumerate(runs, 1) if _code_matches(r, arg)]
    if hits:
        return True, f"code run {hits[0]} has {wanted}"
    return False, f"expected a code run with {wanted}; {_ran(turn)}"


def _produced(turn: TurnRecord) -> str:
    names = ", ".join(dict.fromkeys(o.name for o in turn.outputs))
    return f"it produced {names}" if names else "the code produced no file in this turn"


@check("files_created")
def _files_created(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    pattern = str(arg)
    found: list[OutputFile] = [o for o in turn.outputs if fnmatch.fnmatchcase(o.name, pattern)]
    if found:
        first = found[0]
        saved = f", saved as {first.saved_as}" if first.saved_as else f" ({first.skipped})" if first.skipped else ""
        return True, f"the code produced {first.name}{saved}"
    return False, f"expected the code to produce a file named {_show(pattern)}; {_produced(turn)}"


@check("image")
def _image(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    shown = sum(len(r.images) for r in turn.code_runs)
    count = len(dict.fromkeys([*(i for r in turn.code_runs for i in r.images), *turn.images]))
    detail = f"{shown} image output(s) of code runs, {len(turn.images)} image(s) in the reply"
    if count:
        return True, f"the turn carries {count} image(s): {detail}"
    return False, f"expected an image in the reply or a code run; {detail} ({_ran(turn)})"


@check("status")
def _status(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    detail = ""
    if turn.last_error:
        detail = f" ({turn.last_error.get('code')}: {turn.last_error.get('message')})"
    elif turn.incomplete_details:
        detail = f" (incomplete: {turn.incomplete_details.get('reason')})"
    elif turn.error:
        detail = f" ({turn.error})"
    return turn.status == arg, f"expected the run to end {arg}; it ended {turn.status}{detail}"


@check("max_latency_ms")
def _max_latency(arg: float, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    latency = turn.latency_ms if turn.latency_ms is not None else float("inf")
    return latency <= arg, f"expected the turn to take at most {arg:g} ms; it took {latency:.1f} ms"


@check("usage")
def _usage(arg: dict[str, int], turn: TurnRecord, ctx: CheckContext) -> Outcome:
    used = turn.usage or {}
    over = [f"{used.get(k, 0)} {k.replace('_', ' ')} (budget {limit})" for k, limit in arg.items()
            if used.get(k, 0) > limit]
    budgets = ", ".join(f"{k.replace('_', ' ')} <= {v}" for k, v in arg.items())
    if not turn.usage:
        return False, f"expected token usage within {budgets}; the run reported no usage"
    if over:
        return False, f"expected token usage within {budgets}; used {', '.join(over)}"
    return True, f"token usage within {budgets}: {used.get('total_tokens', 0)} tokens in all"


@check("jinja")
def _jinja(arg: str, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    from jinja2 import TemplateError

    from runner.spec import sandbox

    view = turn_view(turn)
    names = {**ctx.variables, "reply": turn.reply, "turn": view, "vars": ctx.variables,
             "tool_calls": view["tool_calls"], "usage": view["usage"], "status": turn.status}
    whole = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", arg, re.DOTALL)
    try:  # within the template limits: a check that loops or grows fails, saying which limit
        if whole:  # one expression: judge its value itself, not its text
            value: Any = sandbox.evaluate(whole.group(1), names)
        else:
            value = sandbox.render(arg, names).strip()
            value = value.lower() not in ("", "false", "0", "no", "none")
    except TemplateError as exc:
        return False, f"expected {arg} to be true; it failed: {exc}"
    return bool(value), f"expected {arg} to be true; it is {_show(str(value))}; reply: {_show(turn.reply)}"


@check("python")
async def _python(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    from runner.spec.callables import CallableNotFound, resolve_callable

    reference, options = (arg, {}) if isinstance(arg, str) else (arg["function"], arg.get("args") or {})
    try:
        function = resolve_callable(reference, ctx.spec_file)
        result = function(turn.reply, turn_view(turn), **options)
        if inspect.isawaitable(result):
            result = await result
    except CallableNotFound as exc:
        return False, str(exc)
    except Exception as exc:
        return False, f"{reference} raised {type(exc).__name__}: {exc}; reply: {_show(turn.reply)}"
    if isinstance(result, tuple) and len(result) == 2:
        return bool(result[0]), f"{reference}: {result[1]}"
    return bool(result), f"{reference} returned {result!r} for the reply {_show(turn.reply)}"


@check("similar")
async def _similar(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    from runner.expect import similarity

    reference, threshold = (arg, 0.75) if isinstance(arg, str) else (arg["to"], arg.get("threshold", 0.75))
    if not similarity.available():
        return False, similarity.INSTALL_HINT
    score = await similarity.similarity(turn.reply, reference)
    return score >= threshold, (f"expected similarity to {_show(reference)} of at least {threshold:g}; "
                                f"it is {score:.3f}; reply: {_show(turn.reply)}")


@check("llm_rubric")
async def _llm_rubric(arg: Any, turn: TurnRecord, ctx: CheckContext) -> Outcome:
    rubric, model, threshold = ((arg, None, 0.5) if isinstance(arg, str)
                                else (arg["rubric"], arg.get("model"), arg.get("threshold", 0.5)))
    if ctx.grader is None:
        return False, "llm_rubric needs a grader, and none was configured"
    try:
        score, reason = await ctx.grader.grade(rubric, turn.user, turn.reply, model)
    except GradingError as exc:
        return False, str(exc)
    return score >= threshold, (f"expected a grade of at least {threshold:g} for the rubric {_show(rubric)}; "
                                f"graded {score:.2f}: {reason}; reply: {_show(turn.reply)}")


class CannotJudge(Exception):
    """Raised by a check that has nothing to judge with (a re-judge whose grader call no recording answers):
    the check is not judged, neither passed nor failed, and its reason says why."""


async def evaluate(spec_check: Check, record: TurnRecord, ctx: CheckContext, *, implicit: bool = False
                   ) -> CheckResult:
    """Judge one check (composites included) on a turn."""
    kind = spec_check.type
    judged = True
    if kind == "not":
        inner = await evaluate(spec_check.arg, record, ctx)
        passed, judged = not inner.passed and inner.judged, inner.judged  # `not` of an unjudged check never passes
        reason = (f"expected this to fail: {inner.type}: {inner.reason}" if judged
                  else f"not judged: {inner.type}: {inner.reason}")
    elif kind in ("all", "any"):
        inner_results = [await evaluate(c, record, ctx) for c in spec_check.arg]
        outcomes = [r.passed for r in inner_results]
        unjudged = [f"{r.type}: {r.reason}" for r in inner_results if not r.judged]
        failed = [f"{r.type}: {r.reason}" for r in inner_results if not r.passed and r.judged]
        passed = all(outcomes) if kind == "all" else any(outcomes)
        # an unjudged part decides the outcome unless the judged ones already do (a failure of `all`, a pass of `any`)
        judged = not unjudged or (kind == "all" and bool(failed)) or (kind == "any" and passed)
        if not judged:
            reason = (f"{len(unjudged)} of {len(outcomes)} checks not judged: " + " | ".join(unjudged))
        elif kind == "all":
            reason = (f"all {len(outcomes)} checks passed" if passed
                      else f"{len(failed)} of {len(outcomes)} checks failed: " + " | ".join(failed))
        else:
            reason = (f"{sum(outcomes)} of {len(outcomes)} checks passed" if passed
                      else f"none of {len(outcomes)} checks passed: " + " | ".join(failed))
    else:
        try:
            result = CHECKS[kind](spec_check.arg, record, ctx)
            passed, reason = (await result) if inspect.isawaitable(result) else result
        except CannotJudge as exc:
            passed, reason, judged = False, str(exc), False
    return CheckResult(kind, _shown_arg(spec_check), passed, reason, spec_check.where, implicit, judged)


def _shown_arg(spec_check: Check) -> Any:
    """A check's argument as data (nested checks as one-key mappings), for transcripts."""
    if spec_check.type == "not":
        return {spec_check.arg.type: _shown_arg(spec_check.arg)}
    if spec_check.type in ("all", "any"):
        return [{c.type: _shown_arg(c)} for c in spec_check.arg]
    return spec_check.arg


NOT_JUDGED = "not judged: the turn ended in an error before there was a reply to judge"


def not_judged(check: Check, implicit: bool = False) -> CheckResult:
    """A check whose turn (or conversation) ended in an error: it neither passed nor failed."""
    return CheckResult(type=check.type, arg=_shown_arg(check), passed=False, reason=NOT_JUDGED, where=check.where,
                       implicit=implicit, judged=False)


async def run_checks(turn: Turn, record: TurnRecord, ctx: CheckContext | None = None) -> list[CheckResult]:
    """Judge one turn: its explicit checks, plus `status: completed` when it declares no status check. A turn
    that ended in a runner error (unless that status was the one expected) has its checks not judged: an
    empty reply failing `contains` would only hide the cause."""
    ctx = ctx or CheckContext()
    if record.error is not None and record.status != turn.expected_status:
        implicit = [] if any(c.type == "status" for c in turn.expect) else [not_judged(Check("status", "completed"),
                                                                                          implicit=True)]
        return implicit + [not_judged(c) for c in turn.expect]
    results = []
    if not any(c.type == "status" for c in turn.expect):
        results.append(await evaluate(Check("status", "completed"), record, ctx, implicit=True))
    for spec_check in turn.expect:
        results.append(await evaluate(spec_check, record, ctx))
    return results


def conversation_record(transcript: Transcript) -> TurnRecord:
    """The whole conversation as one turn: replies joined, tool calls and usage summed, the last status."""
    ran = [t for t in transcript.turns if not t.skipped]
    usage: dict[str, int] = {}
    for turn in ran:
        for key, value in (turn.usage or {}).items():
            usage[key] = usage.get(key, 0) + int(value)
    calls: list[ToolCallRecord] = [call for turn in ran for call in turn.tool_calls]
    searches: list[SearchRecord] = [search for turn in ran for search in turn.searches]
    code_runs: list[CodeRunRecord] = [run for turn in ran for run in turn.code_runs]
    last = ran[-1] if ran else None
    return TurnRecord(
        index=-1, user="\n".join(t.user for t in ran), reply="\n".join(t.reply for t in ran if t.reply),
        tool_calls=calls, usage=usage or None, status=last.status if last else None,
        last_error=last.last_error if last else None, incomplete_details=last.incomplete_details if last else None,
        latency_ms=sum(t.latency_ms or 0 for t in ran), error=transcript.error,
        messages=[m for t in ran for m in t.messages], searches=searches,
        citations=[c for t in ran for c in t.citations], attachments=[a for t in ran for a in t.attachments],
        code_runs=code_runs, images=[i for t in ran for i in t.images], files=[f for t in ran for f in t.files],
        outputs=[o for t in ran for o in t.outputs],
    )


async def judge(spec: Spec, transcript: Transcript, ctx: CheckContext | None = None) -> Transcript:
    """Fill in the check results of every turn that ran, and of the conversation's own checks."""
    ctx = ctx or CheckContext(spec_file=spec.file, variables=spec.vars)
    for turn, record in zip(spec.turns, transcript.turns, strict=False):
        if not record.skipped:
            record.checks = await run_checks(turn, record, ctx)
    if spec.expect and transcript.error is not None:
        transcript.conversation_checks = [not_judged(c) for c in spec.expect]
    elif spec.expect:
        whole = conversation_record(transcript)
        transcript.conversation_checks = [await evaluate(c, whole, ctx) for c in spec.expect]
    return transcript
