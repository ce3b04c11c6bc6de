"""How `runner run` reports as it goes: a live progress bar on a terminal, plain lines when piped or in CI.

Three modes: `live` (a terminal: a rich progress bar with done / failed / running, rate and ETA, failures
printed above it as they happen, and a summary table at the end), `lines` (CI or a pipe: one line per
conversation), `quiet` (failures and the total only). `--json` output goes through `quiet` on stderr so
stdout carries nothing but the JSON.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

import click

from runner.report.console import conversation_line, total_line
from runner.report.transcript import Transcript


def choose_mode(*, quiet: bool, json_output: bool, stream: TextIO, environ: Any) -> str:
    """`quiet`, `live` (an interactive terminal outside CI) or `lines`."""
    if quiet or json_output:
        return "quiet"
    if stream.isatty() and not environ.get("CI") and environ.get("TERM") != "dumb":
        return "live"
    return "lines"


class Reporter:
    """Receives each finished conversation and the end of the batch; shows them in its mode."""

    def __init__(self, mode: str, total: int, *, err: bool = False, console: Any = None,
                 fold_runs: bool = False) -> None:
        self.mode = mode
        # with --repeat, each conversation's verdict (by its pass rate) is reported at the end, its failing
        # runs folded under it: a FAIL block per failing run would bury the verdict
        self.fold_runs = fold_runs
        self.total = total
        self.err = err
        self.done: list[Transcript] = []
        self.started = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None
        if mode == "live":
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

            self.console = console or Console(stderr=err)
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("[green]{task.fields[passed]} passed[/] [red]{task.fields[failed]} failed[/] "
                           "[cyan]{task.fields[running]} running[/]"),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=True,
            )
            self._task = self._progress.add_task("conversations", total=total, passed=0, failed=0,
                                                 running=min(total, 1), rate="")
            self._progress.start()

    def echo(self, text: str) -> None:
        """One line of output: through rich on a terminal (above the bar while it runs), else plain."""
        if self.mode == "live":
            from rich.text import Text

            self.console.print(Text.from_ansi(text))  # a Text: `[lang=fr]` in a name is not markup
        else:
            click.echo(text, err=self.err)

    def finished(self, transcript: Transcript, running: int) -> None:
        """One conversation ended (`running` others are still going)."""
        self.done.append(transcript)
        if not self.fold_runs and (self.mode == "lines" or not transcript.passed):
            self.echo(conversation_line(transcript))
        if self._progress is not None:
            elapsed = time.perf_counter() - self.started
            passed = sum(t.passed for t in self.done)
            self._progress.update(self._task, completed=len(self.done), passed=passed,
                                  failed=len(self.done) - passed, running=running,
                                  rate=f"{len(self.done) / elapsed:.1f}/s" if elapsed > 0 else "")

    def stop(self) -> None:
        """Take the bar off the screen (the batch ended or was interrupted)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self, seconds: float, out_dir: str | None, total: str | None = None) -> None:
        """The batch ended: stop the bar, show the summary (a table on a terminal) and the total (`total`, or
        the count of conversations by verdict)."""
        if self._progress is not None:
            self.stop()
            self._summary_table()
        self.echo(total or total_line(self.done, seconds, out_dir))

    def _summary_table(self) -> None:
        from rich.table import Table

        table = Table(title="runner", show_edge=False)
        for column in ("verdict", "conversations", "checks passed", "checks failed"):
            table.add_column(column, justify="right" if column != "verdict" else "left")
        for verdict, style in (("passed", "green"), ("failed", "red"), ("error", "red")):
            group = [t for t in self.done if t.verdict == verdict]
            if not group:
                continue
            checks = [c.passed for t in group for turn in t.turns for c in turn.checks]
            table.add_row(f"[{style}]{verdict}[/]", str(len(group)), str(sum(checks)),
                          str(len(checks) - sum(checks)))
        slowest = sorted(self.done, key=lambda t: t.duration_ms, reverse=True)[:3]
        self.console.print(table)
        if slowest and len(self.done) > 3:
            from rich.text import Text

            # Text, not markup: a case or repeat (`greet[lang=fr,repeat=2]`) is part of the name
            self.console.print(Text("slowest: " + ", ".join(f"{t.name} ({t.duration_ms:.0f} ms)" for t in slowest)))
