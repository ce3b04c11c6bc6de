"""A machine-readable summary of a whole run, as JSON: totals and, per conversation, what failed and where.

Meant for CI steps and scripts (`jq '.totals.failed' summary.json`); people read the console or the
Markdown transcripts instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.report.transcript import CheckResult, Transcript
from runner.report.writers import atomic_write

SUMMARY_VERSION = 1

NOT_RUN = "not run (the conversation stopped earlier)"


def conversation_checks(transcript: Transcript) -> list[CheckResult]:
    """The checks on the whole conversation rather than on one turn (none for transcripts without them)."""
    return list(transcript.conversation_checks)


def failure_entries(transcript: Transcript) -> list[dict[str, Any]]:
    """What went wrong in a conversation, in turn order, as JSON-ready entries.

    Each entry has `turn` (1-based; None for a check on the whole conversation), `kind` (`check`: a
    check failed; `not_judged`: a check had nothing to judge it with, as a re-judge without a recording for its
    grader; `error`: the runner could not finish the turn; `not_run`: this turn and the later
    ones never ran), `check` (the check's type, or None), `where` (`file:line:col` of the check in
    the spec, or None) and `reason` (what was expected and what came back). Consecutive turns that
    did not run appear once, at the first.
    """
    entries: list[dict[str, Any]] = []
    previous_skipped = False
    for turn, check in transcript.failures():
        if check is not None:
            entries.append({"turn": turn.index + 1 if turn is not None else None,
                            "kind": "check" if check.judged else "not_judged",
                            "check": check.type, "where": check.where or None, "reason": check.reason})
            continue
        assert turn is not None  # a failure without a check is always a turn's
        if turn.skipped:
            if not previous_skipped:
                entries.append({"turn": turn.index + 1, "kind": "not_run", "check": None, "where": None,
                                "reason": NOT_RUN})
        elif turn.error is not None:
            entries.append({"turn": turn.index + 1, "kind": "error", "check": None, "where": None,
                            "reason": turn.error})
        previous_skipped = turn.skipped
    return entries


def _conversation(transcript: Transcript) -> dict[str, Any]:
    return {
        "spec_file": transcript.spec_file,
        "name": transcript.name,
        "verdict": transcript.verdict,
        "turns": len(transcript.turns),
        "turns_run": sum(1 for t in transcript.turns if not t.skipped),
        "checks": transcript.check_counts(),
        "duration_ms": round(transcript.duration_ms, 1),
        "error": transcript.error,
        "failures": failure_entries(transcript),
    }


def to_summary(transcripts: list[Transcript], seconds: float) -> dict[str, Any]:
    """The run as JSON-ready data: `totals` (conversations by verdict, checks, seconds) and `conversations`.

    Every conversation carries its spec file, name, verdict, turns (all and run), check counts,
    duration, runner error and its failures (see `failure_entries`).
    """
    conversations = [_conversation(t) for t in transcripts]
    checks = {kind: sum(c["checks"][kind] for c in conversations) for kind in ("passed", "failed", "not_judged")}
    totals = {
        "conversations": len(transcripts),
        "passed": sum(t.verdict == "passed" for t in transcripts),
        "failed": sum(t.verdict == "failed" for t in transcripts),
        "errors": sum(t.verdict == "error" for t in transcripts),
        "checks": checks,
        "seconds": round(seconds, 3),
    }
    return {"version": SUMMARY_VERSION, "totals": totals, "conversations": conversations}


def write_summary(path: Path, transcripts: list[Transcript], seconds: float) -> None:
    """Write the summary to `path` as pretty JSON (UTF-8, unescaped), atomically."""
    text = json.dumps(to_summary(transcripts, seconds), ensure_ascii=False, indent=2) + "\n"
    atomic_write(path, text)
