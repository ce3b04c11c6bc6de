"""Expectation checks: one registry mapping a check type to the function that judges a turn.

Each check returns (passed, reason); the reason always says what was expected and what came back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema

from runner.report.transcript import CheckResult, Transcript, TurnRecord
from runner.spec.model import Check, Turn

CheckFn = Callable[[Any, TurnRecord], tuple[bool, str]]
CHECKS: dict[str, CheckFn] = {}


def check(name: str) -> Callable[[CheckFn], CheckFn]:
    """Register a check function under its spec name."""

    def register(fn: CheckFn) -> CheckFn:
        CHECKS[name] = fn
        return fn

    return register


def _show(text: str, limit: int = 300) -> str:
    shown = json.dumps(text, ensure_ascii=False)
    return shown if len(shown) <= limit else shown[: limit - 4] + '..."'


@check("contains")
def _contains(arg: str, turn: TurnRecord) -> tuple[bool, str]:
    ok = arg in turn.reply
    return ok, f"expected the reply to contain {_show(arg)}; reply: {_show(turn.reply)}"


@check("not_contains")
def _not_contains(arg: str, turn: TurnRecord) -> tuple[bool, str]:
    ok = arg not in turn.reply
    return ok, f"expected the reply not to contain {_show(arg)}; reply: {_show(turn.reply)}"


@check("icontains")
def _icontains(arg: str, turn: TurnRecord) -> tuple[bool, str]:
    ok = arg.casefold() in turn.reply.casefold()
    return ok, f"expected the reply to contain {_show(arg)} (ignoring case); reply: {_show(turn.reply)}"


@check("equals")
def _equals(arg: str, turn: TurnRecord) -> tuple[bool, str]:
    ok = turn.reply.strip() == arg.strip()
    return ok, f"expected the reply to equal {_show(arg)}; reply: {_show(turn.reply)}"


@check("starts_with")
def _starts_with(arg: str, turn: TurnRecord) -> tuple[bool, str]:
    ok = turn.reply.lstrip().startswith(arg)
    return ok, f"expected the reply to start with {_show(arg)}; reply: {_show(turn.reply)}"


@check("regex")
def _regex(arg: str, turn: TurnRecord) -> tuple[bool, str]:
    ok = re.search(arg, turn.reply) is not None
    return ok, f"expected the reply to match /{arg}/; reply: {_show(turn.reply)}"


@check("json")
def _json(arg: Any, turn: TurnRecord) -> tuple[bool, str]:
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
def _tool_called(arg: Any, turn: TurnRecord) -> tuple[bool, str]:
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


@check("status")
def _status(arg: str, turn: TurnRecord) -> tuple[bool, str]:
    ok = turn.status == arg
    detail = ""
    if turn.last_error:
        detail = f" ({turn.last_error.get('code')}: {turn.last_error.get('message')})"
    elif turn.incomplete_details:
        detail = f" (incomplete: {turn.incomplete_details.get('reason')})"
    elif turn.error:
        detail = f" ({turn.error})"
    return ok, f"expected the run to end {arg}; it ended {turn.status}{detail}"


@check("max_latency_ms")
def _max_latency(arg: float, turn: TurnRecord) -> tuple[bool, str]:
    latency = turn.latency_ms if turn.latency_ms is not None else float("inf")
    return latency <= arg, f"expected the turn to take at most {arg:g} ms; it took {latency:.1f} ms"


def run_checks(turn: Turn, record: TurnRecord) -> list[CheckResult]:
    """Judge one turn: its explicit checks, plus `status: completed` when it declares no status check."""
    checks: list[tuple[Check, bool]] = [(c, False) for c in turn.expect]
    if not any(c.type == "status" for c in turn.expect):
        checks.insert(0, (Check("status", "completed"), True))
    results = []
    for spec_check, implicit in checks:
        passed, reason = CHECKS[spec_check.type](spec_check.arg, record)
        results.append(CheckResult(spec_check.type, spec_check.arg, passed, reason, spec_check.where, implicit))
    return results


def judge(turns: tuple[Turn, ...], transcript: Transcript) -> Transcript:
    """Fill in the check results of every turn that ran; turns that did not run stay marked skipped."""
    for turn, record in zip(turns, transcript.turns, strict=False):
        if not record.skipped:
            record.checks = run_checks(turn, record)
    return transcript
