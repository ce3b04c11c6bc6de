"""Expectation checks (runner/expect/checks.py) and the transcript verdict (runner/report/transcript.py)."""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from runner.expect.checks import CHECKS, COMPOSITE, CheckContext
from runner.expect.checks import judge as judge_async
from runner.expect.checks import run_checks as run_checks_async
from runner.report.transcript import CheckResult, ToolCallRecord, Transcript, TurnRecord
from runner.spec.model import Check, Spec, Turn

ROOT = Path(__file__).resolve().parent.parent


def record(reply: str = "", **kw: Any) -> TurnRecord:
    kw.setdefault("status", "completed")
    return TurnRecord(index=kw.pop("index", 0), user=kw.pop("user", "hi"), reply=reply, **kw)


def run(kind: str, arg: Any, rec: TurnRecord, ctx: CheckContext | None = None) -> tuple[bool, str]:
    result = CHECKS[kind](arg, rec, ctx or CheckContext())
    if inspect.isawaitable(result):
        return asyncio.run(_awaited(result))
    return result  # type: ignore[return-value]


async def _awaited(result: Any) -> Any:
    return await result


def run_checks(turn: Turn, rec: TurnRecord) -> list[CheckResult]:
    return asyncio.run(run_checks_async(turn, rec))


def judge(turns: tuple[Turn, ...], t: Transcript) -> Transcript:
    return asyncio.run(judge_async(Spec(file="specs/x.yaml", name="x", turns=turns), t))


def transcript(turns: list[TurnRecord], **kw: Any) -> Transcript:
    return Transcript(
        spec_file="specs/x.yaml",
        name="x",
        backend={"kind": "embedded"},
        model="echo",
        assistant={"model": "echo"},
        turns=turns,
        **kw,
    )


# --- the registry matches the schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    "schema_file", [ROOT / "schemas" / "spec.schema.json", ROOT / "runner" / "spec" / "spec.schema.json"]
)
def test_schema_check_types_equal_registry(schema_file: Path) -> None:
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    assert set(schema["$defs"]["check"]["properties"]) == set(CHECKS) | set(COMPOSITE)


# --- text checks -----------------------------------------------------------------------------------

TEXT_CASES = [
    # kind, arg, passing reply, failing reply
    ("contains", "Paris", "The capital is Paris.", "The capital is Lyon."),
    ("not_contains", "sorry", "Here you go.", "I am sorry, I cannot."),
    ("icontains", "PARIS", "the capital is paris", "the capital is lyon"),
    ("equals", "Hello there", "  Hello there\n", "Hello there!"),
    ("starts_with", "Sure", "  Sure, here it is", "Well, sure"),
    ("regex", r"\b\d{3}-\d{4}\b", "call 555-1234 now", "call me maybe"),
]


@pytest.mark.parametrize(("kind", "arg", "good", "bad"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_text_check_passes(kind: str, arg: str, good: str, bad: str) -> None:
    ok, reason = run(kind, arg, record(good))
    assert ok is True, reason


@pytest.mark.parametrize(("kind", "arg", "good", "bad"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_text_check_fails_showing_expected_and_reply(kind: str, arg: str, good: str, bad: str) -> None:
    ok, reason = run(kind, arg, record(bad))
    assert ok is False
    assert arg in reason or json.dumps(arg) in reason
    assert json.dumps(bad) in reason


def test_icontains_ignores_case_both_ways() -> None:
    assert run("icontains", "straße", record("STRASSE ahead"))[0] is True  # casefold, not lower


def test_equals_ignores_surrounding_whitespace_of_both() -> None:
    assert run("equals", "  ok\n", record("ok"))[0] is True


def test_long_reply_is_shortened_in_reason() -> None:
    ok, reason = run("contains", "zzz", record("a" * 5000))
    assert not ok
    assert len(reason) < 500
    assert '..."' in reason


# --- json --------------------------------------------------------------------------------------------


def test_json_true_passes_on_valid_json() -> None:
    ok, reason = run("json", True, record('{"a": 1}'))
    assert ok, reason


def test_json_true_fails_on_non_json_showing_reply() -> None:
    ok, reason = run("json", True, record("not json {"))
    assert not ok
    assert "expected the reply to be JSON" in reason
    assert json.dumps("not json {") in reason


SCHEMA = {
    "type": "object",
    "required": ["city", "temp"],
    "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
}


def test_json_schema_passes() -> None:
    ok, reason = run("json", {"schema": SCHEMA}, record('{"city": "Paris", "temp": 21.5}'))
    assert ok, reason
    assert "schema" in reason


def test_json_schema_fails_showing_where_what_and_reply() -> None:
    reply = '{"city": "Paris", "temp": "warm"}'
    ok, reason = run("json", {"schema": SCHEMA}, record(reply))
    assert not ok
    assert "at temp" in reason
    assert "'warm' is not of type 'number'" in reason
    assert json.dumps(reply) in reason


def test_json_schema_failure_at_root() -> None:
    ok, reason = run("json", {"schema": SCHEMA}, record("[1, 2]"))
    assert not ok
    assert "(root)" in reason


def test_json_schema_on_non_json_reply_fails() -> None:
    ok, reason = run("json", {"schema": SCHEMA}, record("plain text"))
    assert not ok
    assert json.dumps("plain text") in reason


# --- tool_called ---------------------------------------------------------------------------------------


def calls_record(*calls: tuple[str, Any]) -> TurnRecord:
    return record(
        "done",
        tool_calls=[
            ToolCallRecord(id=f"call_{i}", name=n, arguments=a, output="ok") for i, (n, a) in enumerate(calls)
        ],
    )


WEATHER = {
    "city": "Paris",
    "units": "metric",
    "options": {"days": 3, "hourly": False, "extra": "x"},
    "tags": ["a", "b"],
}


def test_tool_called_by_name_passes() -> None:
    ok, reason = run("tool_called", "get_weather", calls_record(("get_time", {}), ("get_weather", WEATHER)))
    assert ok, reason


def test_tool_called_by_name_fails_listing_calls_made() -> None:
    ok, reason = run("tool_called", "get_weather", calls_record(("get_time", {"tz": "UTC"})))
    assert not ok
    assert "get_weather" in reason
    assert 'get_time({"tz": "UTC"})' in reason


def test_tool_called_fails_with_no_calls_at_all() -> None:
    ok, reason = run("tool_called", "get_weather", calls_record())
    assert not ok
    assert "calls made: none" in reason


def test_tool_called_arguments_subset_passes_with_nested_dicts() -> None:
    arg = {"name": "get_weather", "arguments": {"city": "Paris", "options": {"days": 3}}}
    ok, reason = run("tool_called", arg, calls_record(("get_weather", WEATHER)))
    assert ok, reason


def test_tool_called_arguments_any_matching_call_passes() -> None:
    arg = {"name": "get_weather", "arguments": {"city": "Rome"}}
    rec = calls_record(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"}))
    assert run("tool_called", arg, rec)[0] is True


def test_tool_called_arguments_without_arguments_key_is_name_only() -> None:
    assert run("tool_called", {"name": "get_weather"}, calls_record(("get_weather", WEATHER)))[0] is True


def test_tool_called_arguments_mismatching_value_fails() -> None:
    arg = {"name": "get_weather", "arguments": {"city": "Paris", "options": {"days": 5}}}
    ok, reason = run("tool_called", arg, calls_record(("get_weather", WEATHER)))
    assert not ok
    assert json.dumps(arg["arguments"]) in reason  # expected
    assert "get_weather(" + json.dumps(WEATHER) + ")" in reason  # actual


def test_tool_called_arguments_missing_key_fails() -> None:
    arg = {"name": "get_weather", "arguments": {"country": "FR"}}
    assert run("tool_called", arg, calls_record(("get_weather", WEATHER)))[0] is False


def test_tool_called_arguments_nested_where_actual_is_not_a_dict_fails() -> None:
    arg = {"name": "get_weather", "arguments": {"city": {"name": "Paris"}}}
    assert run("tool_called", arg, calls_record(("get_weather", WEATHER)))[0] is False


def test_tool_called_arguments_lists_must_match_whole() -> None:
    ok_arg = {"name": "get_weather", "arguments": {"tags": ["a", "b"]}}
    short = {"name": "get_weather", "arguments": {"tags": ["a"]}}
    assert run("tool_called", ok_arg, calls_record(("get_weather", WEATHER)))[0] is True
    assert run("tool_called", short, calls_record(("get_weather", WEATHER)))[0] is False


def test_tool_called_arguments_name_must_match_too() -> None:
    arg = {"name": "get_weather", "arguments": {"city": "Paris"}}
    ok, reason = run("tool_called", arg, calls_record(("get_forecast", {"city": "Paris"})))
    assert not ok
    assert "get_forecast" in reason


def test_tool_called_arguments_unparsed_string_arguments_fail_cleanly() -> None:
    arg = {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert run("tool_called", arg, calls_record(("get_weather", "{not json")))[0] is False


def test_tool_called_arguments_boolean_does_not_match_number() -> None:
    arg = {"name": "confirm", "arguments": {"ok": True}}
    assert run("tool_called", arg, calls_record(("confirm", {"ok": 1})))[0] is False


# --- status ------------------------------------------------------------------------------------------


def test_status_passes() -> None:
    ok, reason = run("status", "completed", record("hi", status="completed"))
    assert ok, reason


def test_status_fails_showing_expected_and_actual() -> None:
    ok, reason = run("status", "completed", record("", status="expired"))
    assert not ok
    assert "completed" in reason
    assert "expired" in reason


def test_status_failed_run_reason_has_last_error_code_and_message() -> None:
    rec = record("", status="failed", last_error={"code": "rate_limit_exceeded", "message": "slow down"})
    ok, reason = run("status", "completed", rec)
    assert not ok
    assert "it ended failed" in reason
    assert "rate_limit_exceeded" in reason
    assert "slow down" in reason


def test_status_expected_failed_passes_on_failed_run() -> None:
    rec = record("", status="failed", last_error={"code": "server_error", "message": "boom"})
    assert run("status", "failed", rec)[0] is True


def test_status_incomplete_reason_shown() -> None:
    rec = record("partial", status="incomplete", incomplete_details={"reason": "max_completion_tokens"})
    ok, reason = run("status", "completed", rec)
    assert not ok
    assert "incomplete" in reason
    assert "max_completion_tokens" in reason


def test_status_runner_error_shown() -> None:
    rec = record("", status=None, error="connection refused")
    ok, reason = run("status", "completed", rec)
    assert not ok
    assert "connection refused" in reason


# --- max_latency_ms --------------------------------------------------------------------------------


def test_max_latency_passes() -> None:
    ok, reason = run("max_latency_ms", 500, record("x", latency_ms=123.4))
    assert ok, reason


def test_max_latency_boundary_is_inclusive() -> None:
    assert run("max_latency_ms", 500, record("x", latency_ms=500.0))[0] is True


def test_max_latency_fails_showing_limit_and_latency() -> None:
    ok, reason = run("max_latency_ms", 500, record("x", latency_ms=1234.56))
    assert not ok
    assert "500 ms" in reason
    assert "1234.6 ms" in reason


def test_max_latency_unknown_latency_fails() -> None:
    ok, reason = run("max_latency_ms", 500, record("x", latency_ms=None))
    assert not ok
    assert "500" in reason


# --- run_checks and judge ---------------------------------------------------------------------------


def test_run_checks_adds_implicit_status_first() -> None:
    turn = Turn(index=0, user="hi", expect=(Check("contains", "hi", "s.yaml:5:19"),))
    results = run_checks(turn, record("hi there"))
    assert [(r.type, r.arg, r.implicit) for r in results] == [
        ("status", "completed", True),
        ("contains", "hi", False),
    ]
    assert all(r.passed for r in results)
    assert results[1].where == "s.yaml:5:19"


def test_run_checks_implicit_status_on_turn_without_checks() -> None:
    results = run_checks(Turn(index=0, user="hi"), record("", status="failed"))
    assert len(results) == 1
    assert results[0].type == "status" and results[0].implicit and not results[0].passed


def test_run_checks_no_implicit_status_when_turn_has_one() -> None:
    turn = Turn(
        index=0, user="hi", expect=(Check("contains", "x", "a:1:1"), Check("status", "failed", "a:2:1"))
    )
    results = run_checks(
        turn, record("x", status="failed", last_error={"code": "server_error", "message": "m"})
    )
    assert [r.type for r in results] == ["contains", "status"]
    assert not any(r.implicit for r in results)
    assert all(r.passed for r in results)


def test_run_checks_keeps_order_and_results() -> None:
    turn = Turn(
        index=0, user="hi", expect=(Check("contains", "a"), Check("contains", "zzz"), Check("regex", "^a"))
    )
    results = run_checks(turn, record("abc"))
    assert [r.passed for r in results] == [True, True, False, True]
    assert isinstance(results[2], CheckResult)
    assert "zzz" in results[2].reason


def test_judge_fills_run_turns_and_leaves_skipped_without_checks() -> None:
    turns = (
        Turn(index=0, user="a", expect=(Check("contains", "a"),)),
        Turn(index=1, user="b", expect=(Check("contains", "b"),)),
    )
    recs = [
        record("a", index=0, status="failed", last_error={"code": "server_error", "message": "x"}),
        TurnRecord(index=1, user="b", skipped=True),
    ]
    t = judge(turns, transcript(recs))
    assert [c.type for c in t.turns[0].checks] == ["status", "contains"]
    assert t.turns[1].checks == []
    assert t.turns[1].skipped
    assert t.verdict == "failed"


# --- Transcript verdict, failures, to_dict ------------------------------------------------------------


def passing_turn(index: int = 0) -> TurnRecord:
    return record(
        "ok",
        index=index,
        checks=[
            CheckResult("status", "completed", True, "fine", implicit=True),
            CheckResult("contains", "ok", True, "fine", "s.yaml:3:5"),
        ],
    )


def failing_turn(index: int = 0) -> TurnRecord:
    return record(
        "nope",
        index=index,
        checks=[
            CheckResult("status", "completed", True, "fine", implicit=True),
            CheckResult("contains", "ok", False, "bad", "s.yaml:3:5"),
        ],
    )


def test_verdict_passed() -> None:
    t = transcript([passing_turn(0), passing_turn(1)])
    assert t.passed and t.verdict == "passed"
    assert t.failures() == []


def test_verdict_failed_on_failed_check() -> None:
    t = transcript([passing_turn(0), failing_turn(1)])
    assert not t.passed
    assert t.verdict == "failed"
    assert [(turn.index, c.type if c else None) for turn, c in t.failures()] == [(1, "contains")]


def test_verdict_failed_when_a_turn_was_skipped() -> None:
    t = transcript([passing_turn(0), TurnRecord(index=1, user="b", skipped=True)])
    assert t.verdict == "failed"
    assert [(turn.index, c) for turn, c in t.failures()] == [(1, None)]


def test_verdict_error_when_runner_could_not_finish() -> None:
    bad = record("", status=None, error="boom")
    t = transcript([bad, TurnRecord(index=1, user="b", skipped=True)], error="turn 1: boom")
    assert t.verdict == "error"
    assert [(turn.index, c) for turn, c in t.failures()] == [(0, None), (1, None)]


def test_verdict_error_even_if_checks_passed() -> None:
    t = transcript([passing_turn(0)], error="creating the thread: nope")
    assert t.verdict == "error"


def test_verdict_with_no_turns_is_not_passed() -> None:
    assert transcript([]).verdict == "failed"


def test_turn_passed_property() -> None:
    assert passing_turn().passed
    assert not failing_turn().passed
    assert not TurnRecord(index=0, user="x", skipped=True).passed
    assert not record("x", error="boom").passed


def test_to_dict_has_verdict_counts_and_is_json_serialisable() -> None:
    turn = failing_turn(0)
    turn.tool_calls = [ToolCallRecord("call_1", "f", {"a": [1, {"b": None}]}, "out")]
    turn.usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    t = transcript([turn, TurnRecord(index=1, user="b", skipped=True)], tags=["smoke"])
    data = t.to_dict()
    assert data["verdict"] == "failed"
    assert data["checks"] == {"passed": 1, "failed": 1, "not_judged": 0}
    assert data["version"] == 1
    assert list(data)[:3] == ["version", "name", "verdict"]
    back = json.loads(json.dumps(data))
    assert back == data
    assert back["turns"][0]["tool_calls"][0] == {
        "id": "call_1",
        "name": "f",
        "arguments": {"a": [1, {"b": None}]},
        "output": "out",
    }
    assert back["turns"][0]["checks"][1]["where"] == "s.yaml:3:5"
    assert back["turns"][1]["skipped"] is True


def test_to_dict_holds_every_field_of_the_transcript() -> None:
    """to_dict is written out field by field (for speed): it must still hold every field, as asdict would."""
    import dataclasses

    turn = failing_turn(0)
    turn.tool_calls = [ToolCallRecord("call_1", "f", {"a": 1}, "out")]
    turn.latency_ms = 12.345
    t = transcript([turn], tags=["smoke"])
    t.conversation_checks = [CheckResult("jinja", "x", True, "ok")]
    t.duration_ms = 99.96
    reference = dataclasses.asdict(t)
    reference.update(verdict="failed", checks={"passed": 2, "failed": 1, "not_judged": 0}, duration_ms=100.0)
    reference["turns"][0]["latency_ms"] = 12.3
    assert t.to_dict() == reference
    assert list(t.to_dict())[:3] == ["version", "name", "verdict"]
