"""Console output: one line per conversation, its failures spelled out, and a total."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from runner.report.transcript import CheckResult, Transcript

if TYPE_CHECKING:
    from runner.run import PassRate

_STYLE = {"passed": ("PASS", "green"), "failed": ("FAIL", "red"), "error": ("ERROR", "red")}


def conversation_line(transcript: Transcript) -> str:
    """A one-line summary of a finished conversation, with its failures on the lines below."""
    label, color = _STYLE[transcript.verdict]
    checks = [c for t in transcript.turns for c in t.checks] + transcript.conversation_checks
    ran = sum(1 for t in transcript.turns if not t.skipped)
    counts = f"{ran} turn{'s' if ran != 1 else ''}, {len(checks)} check{'s' if len(checks) != 1 else ''}"
    head = (f"{click.style(label.ljust(5), fg=color, bold=True)} {transcript.spec_file}  {transcript.name}  "
            f"({counts}, {transcript.duration_ms:.0f} ms)")
    lines = [head]
    turn_errors = False
    for turn in transcript.turns:
        if turn.skipped:
            if turn.index > 0 and not transcript.turns[turn.index - 1].skipped:
                lines.append(f"      turn {turn.index + 1} and later: not run (the conversation stopped earlier)")
            continue
        if turn.error:  # the cause first: the checks after it could not be judged, or failed because of it
            turn_errors = True
            lines.append(f"      turn {turn.index + 1}: {turn.error}")
        for check in turn.checks:
            # an implicit status failure only repeats the turn's own error, shown above
            # one not judged for a reason of its own (no error above) says it, as a failure would
            if not check.passed and (check.judged or not turn.error) and not (check.implicit and turn.error):
                where = f" [{check.where}]" if check.where else ""
                lines.append(f"      turn {turn.index + 1} {check.type}{where}: {check.reason}")
        if turn.error:
            lines.extend(_not_judged(f"turn {turn.index + 1}", [c for c in turn.checks if not c.implicit]))
    for check in transcript.conversation_checks:
        if not check.passed and (check.judged or not transcript.error):
            where = f" [{check.where}]" if check.where else ""
            lines.append(f"      conversation {check.type}{where}: {check.reason}")
    if transcript.error:
        lines.extend(_not_judged("conversation", transcript.conversation_checks))
    if transcript.error and not turn_errors:
        lines.insert(1, f"      {transcript.error}")
    return "\n".join(lines)


def _not_judged(scope: str, checks: list[CheckResult]) -> list[str]:
    unjudged = [c.type for c in checks if not c.judged]
    if not unjudged:
        return []
    count = f"{len(unjudged)} check{'s' if len(unjudged) != 1 else ''}"
    return [f"      {scope}: {count} not judged ({', '.join(unjudged)}): the error above came first"]


def folded_runs(failing: list[Transcript], never_ran: int) -> list[str]:
    """A repeated conversation's failing runs, folded: which ones, and the first failure of the first."""
    if not failing and not never_ran:
        return []
    names = ", ".join(t.case.rsplit("repeat=", 1)[-1] for t in failing)
    lines = [f"      {len(failing)} failing run{'s' if len(failing) != 1 else ''}" + (f" (repeat {names})" if failing
                                                                                      else "")
             + (f", {never_ran} not run" if never_ran else "")]
    if failing:
        first = conversation_line(failing[0]).splitlines()[1:2]
        lines += [f"      first, repeat {names.split(', ')[0]}:{line.removeprefix('     ')}" for line in first]
    return lines


def rated_total_line(rates: Sequence[PassRate], transcripts: list[Transcript], seconds: float,
                     out_dir: str | None) -> str:
    """The closing total with --repeat: conversations by their pass-rate verdict, then the runs."""
    passed = sum(r.ok for r in rates)
    runs_passed = sum(t.passed for t in transcripts)
    text = (f"{passed} passed, {len(rates) - passed} failed by pass rate ({len(transcripts)} runs: {runs_passed} "
            f"passed, {len(transcripts) - runs_passed} failed) in {seconds:.2f}s")
    if out_dir:
        text += f"; transcripts in {out_dir}/"
    return click.style(text, fg="green" if passed == len(rates) else "red", bold=True)


def total_line(transcripts: list[Transcript], seconds: float, out_dir: str | None) -> str:
    """The closing total: counts by verdict and where the transcripts are."""
    passed = sum(t.verdict == "passed" for t in transcripts)
    failed = sum(t.verdict == "failed" for t in transcripts)
    errors = sum(t.verdict == "error" for t in transcripts)
    text = f"{passed} passed, {failed} failed"
    if errors:
        text += f", {errors} error{'s' if errors != 1 else ''}"
    text += f" in {seconds:.2f}s"
    if out_dir:
        text += f"; transcripts in {out_dir}/"
    color = "green" if passed == len(transcripts) else "red"
    return click.style(text, fg=color, bold=True)
