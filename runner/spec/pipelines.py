"""Which API each conversation goes through: the spec's `backend.pipeline`, or `--pipeline` over every spec.

Kept free of the SDK and the engine, so the pytest plugin can expand specs while it collects them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from runner.spec.model import Spec

PIPELINE_CHOICES = ("assistants", "responses", "both")
RESPONSES_CASE = "pipeline=responses"  # the case of a spec's responses run beside its assistants one


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
