"""Which API each conversation goes through: the spec's `backend.pipeline`, or `--pipeline` over every spec.

Kept free of the SDK and the engine, so the pytest plugin can expand specs while it collects them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from runner.spec.model import Spec

PIPELINE_CHOICES = ("assistants", "responses", "both")
RESPONSES_CASE = "pipeline=responses"  # the case of a spec's responses run beside its assistants one
_REPEAT_CASE = re.compile(r"repeat=\d+")  # the case part --repeat adds last (runner.run.repeated)


def spec_case(case: str, *, repeat: bool = True, pipeline: bool = True) -> str:
    """A run's case without what the run added to the spec's own: the `repeat=N` that --repeat puts last
    (with `repeat`), the `pipeline=responses` that `both` puts before it (with `pipeline`)."""
    parts = [part for part in case.split(",") if part]
    repeated = parts.pop() if parts and _REPEAT_CASE.fullmatch(parts[-1]) else None
    if pipeline and parts and parts[-1] == RESPONSES_CASE:
        parts.pop()
    if repeated is not None and not repeat:
        parts.append(repeated)
    return ",".join(parts)


def chosen(spec: Spec, pipeline: str | None) -> str:
    """The pipeline a spec runs on: `pipeline` (the flag) when given, else the spec's own."""
    return pipeline or spec.pipeline


def piped(specs: Sequence[Spec], pipeline: str | None = None) -> list[Spec]:
    """The specs on their pipeline (`pipeline` when given, else each spec's `backend.pipeline`); a spec on `both`
    runs twice, the responses run a case of its own (`greet[pipeline=responses]`: its own transcript and
    cassette) beside the assistants one."""
    out = []
    for spec in specs:
        on = chosen(spec, pipeline)
        if on != "both":
            out.append(dataclasses.replace(spec, pipeline=on))
            continue
        out += [dataclasses.replace(spec, pipeline="assistants"), dataclasses.replace(
            spec, pipeline="responses", case=",".join(filter(None, (spec.case, RESPONSES_CASE))))]
    return out


def any_on_both(specs: Sequence[Spec], pipeline: str | None = None) -> bool:
    """Whether any spec runs on both pipelines (then the run ends with the parity table)."""
    return any(chosen(spec, pipeline) == "both" for spec in specs)
