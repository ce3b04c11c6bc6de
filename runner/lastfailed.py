"""Running what failed last, as pytest's `--last-failed` and `--failed-first` do: the conversations that failed
(or errored) are remembered in the output folder, in `.lastfailed`, and the next run can take only those,
or those first.

A conversation is its spec file and case without the `repeat=` part: with `--repeat`, one failing run makes the
conversation failing, and all its runs go again. Each run updates what is remembered: a conversation that ran
and passed is forgotten, one that failed is added, one that did not run (not selected, interrupted) stays as it
was, so `-k` and `--shard` narrow a re-run without losing the other failures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.spec.pipelines import spec_case

CACHE = Path(".lastfailed")  # no .json suffix: readers of a transcripts folder never take it for a transcript
VERSION = 1


def conversation_key(spec_file: str, case: str) -> str:
    """The conversation a run belongs to: its spec file and case, without the `repeat=` part."""
    kept = spec_case(case, pipeline=False)  # a conversation's responses run is a conversation of its own
    return f"{spec_file}[{kept}]" if kept else spec_file


@dataclass(frozen=True)
class Remembered:
    """What the output folder remembers of the last runs' failures (empty when there is nothing, or nothing
    readable: `problem` then says why)."""

    failed: frozenset[str]
    problem: str | None = None


def load(out_dir: Path) -> Remembered:
    """The failures remembered in `out_dir`."""
    path = out_dir / CACHE
    if path.is_dir():
        return Remembered(frozenset(), f"{path} is a folder, not the file that remembers the failures: remove it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Remembered(frozenset())
    except (OSError, ValueError) as exc:
        return Remembered(frozenset(), f"cannot read {path} ({exc}): it is written again after this run")
    failed = data.get("failed") if isinstance(data, dict) else None
    if not isinstance(failed, list) or data.get("version") != VERSION:
        return Remembered(frozenset(), f"{path} is not a failure list this version writes: it is written again")
    return Remembered(frozenset(key for key in failed if isinstance(key, str)))  # what is not a name is no failure


def updated(previous: Iterable[str], ran: Iterable[Any]) -> set[str]:
    """The failures to remember after a run: the previous ones less the conversations that ran, plus those whose
    runs failed (`ran`: the finished transcripts)."""
    transcripts = list(ran)
    done = {conversation_key(t.spec_file, t.case) for t in transcripts}
    failing = {conversation_key(t.spec_file, t.case) for t in transcripts if not t.passed}
    return (set(previous) - done) | failing


def save(out_dir: Path, failed: Iterable[str]) -> None:
    """Remember `failed` in `out_dir`, atomically (OSError when it cannot be written)."""
    from runner.report.writers import atomic_write

    text = json.dumps({"version": VERSION, "failed": sorted(set(failed))}, ensure_ascii=False, indent=1)
    atomic_write(out_dir / CACHE, text + "\n")


def choose(runs: Sequence[Any], failed: frozenset[str], *, only: bool) -> tuple[list[Any], str]:
    """The runs (`(spec, label)` pairs) to make: with `only`, those of the remembered failures, else all with
    those first (each group in its order); and the line saying what was chosen. With no remembered failure among
    the runs, all of them run, as pytest does."""
    def failing(run: Any) -> bool:
        return conversation_key(run[0].file, run[0].case) in failed

    first = [run for run in runs if failing(run)]
    if not first:
        return list(runs), f"no failures remembered among these {len(runs)} runs: running all"
    if only:
        return first, f"running the {len(first)} run{'s' if len(first) != 1 else ''} that failed last time " \
                      f"(of {len(runs)})"
    return first + [run for run in runs if not failing(run)], \
        f"running the {len(first)} that failed last time first, then the other {len(runs) - len(first)}"
