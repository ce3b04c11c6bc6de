"""The parity table of `--pipeline both`: each conversation's outcome through the Assistants and the Responses
pipelines side by side, and whether their replies and tool calls are the same (what a migration changes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.report.transcript import Transcript
from runner.spec.pipelines import RESPONSES_CASE, spec_case


@dataclass(frozen=True)
class Parity:
    """One conversation on both pipelines."""

    label: str
    assistants: str  # its verdict there, or "not run"
    responses: str
    same_replies: bool
    same_calls: bool

    @property
    def same(self) -> bool:
        """Both pipelines gave the same verdict, replies and tool calls."""
        return self.assistants == self.responses and self.same_replies and self.same_calls


def _base_case(case: str) -> str:
    """A case without the pipeline's part: what pairs the two runs of one conversation."""
    return spec_case(case, repeat=False)


def _calls(transcript: Transcript) -> list[list[tuple[str, str, str | None]]]:
    return [[(call.name, repr(call.arguments), call.output) for call in turn.tool_calls] for turn in transcript.turns]


def parities(transcripts: Sequence[Transcript]) -> list[Parity]:
    """The conversations run on both pipelines, paired by spec and case, in the order they came."""
    pairs: dict[tuple[str, str], dict[str, Transcript]] = {}
    for transcript in transcripts:
        pairs.setdefault((transcript.spec_file, _base_case(transcript.case)), {})[transcript.pipeline] = transcript
    out = []
    for pair in pairs.values():
        old, new = pair.get("assistants"), pair.get("responses")
        shown = old or new
        assert shown is not None
        label = shown.name.replace(f",{RESPONSES_CASE}", "").replace(f"[{RESPONSES_CASE}]", "")
        both = old is not None and new is not None
        out.append(Parity(
            label=label, assistants=old.verdict if old else "not run", responses=new.verdict if new else "not run",
            same_replies=both and [t.reply for t in old.turns] == [t.reply for t in new.turns],  # type: ignore[union-attr]
            same_calls=both and _calls(old) == _calls(new)))  # type: ignore[arg-type]
    return out


def parity_lines(transcripts: Sequence[Transcript]) -> list[str]:
    """The parity table as text lines, with a total: how many conversations behave the same on both."""
    rows = parities(transcripts)
    if not rows:
        return []
    width = max(len("conversation"), *(len(row.label) for row in rows))
    lines = ["", f"{'conversation':<{width}}  {'assistants':<10}  {'responses':<10}  replies    tool calls",
             f"{'-' * width}  {'-' * 10}  {'-' * 10}  ---------  ----------"]
    for row in rows:
        lines.append(f"{row.label:<{width}}  {row.assistants:<10}  {row.responses:<10}  "
                     f"{'same' if row.same_replies else 'DIFFERENT':<9}  {'same' if row.same_calls else 'DIFFERENT'}")
    same = sum(row.same for row in rows)
    plural = "s" if len(rows) != 1 else ""
    lines.append(f"parity: {same} of {len(rows)} conversation{plural} the same on both pipelines")
    return lines
